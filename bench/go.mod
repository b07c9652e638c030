// bench is its own module so that its chart dependency (golang.org/x/image)
// stays out of hull's go.mod; it builds against the hull tree beside it.
module github.com/hull-runtime/hull/bench

go 1.26.8

require github.com/hull-runtime/hull v0.0.0

replace github.com/hull-runtime/hull => ../
