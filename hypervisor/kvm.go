package hypervisor

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// KVM ioctl numbers (linux/kvm.h).
const (
	kvmGetAPIVersion     = 0xAE00
	kvmCreateVM          = 0xAE01
	kvmGetVCPUMmapSize   = 0xAE04
	kvmCreateVCPU        = 0xAE41
	kvmSetUserMemRegion  = 0x4020AE46
	kvmSetRegs           = 0x4090AE82
	kvmGetSregs          = 0x8138AE83
	kvmSetSregs          = 0x4138AE84
	kvmRun               = 0xAE80
	kvmExitHlt           = 5
	kvmSregsSize         = 312
	kvmRegsRIP, kvmRegsN = 16, 18
)

// probeLoop is 16-bit real-mode code: count ECX down from probeIterations,
// then HLT.
//
//	mov ecx, imm32 ; 66 B9 imm32
//	dec ecx        ; 66 49
//	jnz -4         ; 75 FC
//	hlt            ; F4
var probeLoop = []byte{0x66, 0xB9, 0, 0, 0, 0, 0x66, 0x49, 0x75, 0xFC, 0xF4}

const probeIterations = 100_000

// KVMProbe is the outcome of timing a tiny guest loop under KVM.
type KVMProbe struct {
	Usable bool
	// Elapsed is how long the loop took (zero if it never ran).
	Elapsed time.Duration
	// Reason says why KVM is or is not usable.
	Reason string
}

// ProbeKVM runs a 100k-iteration loop in a fresh KVM guest. Native hardware
// virtualization finishes it in well under a millisecond; a nested or emulated
// /dev/kvm that is orders of magnitude slower (seen on our CI machines) is
// worse than TCG, so anything slower than limit counts as unusable.
func ProbeKVM(dev string, limit time.Duration) KVMProbe {
	type result struct {
		elapsed time.Duration
		err     error
	}
	ch := make(chan result, 1)
	go func() {
		// The ioctls must come from one thread; the thread is dropped after.
		runtime.LockOSThread()
		d, err := runKVMLoop(dev)
		ch <- result{d, err}
	}()
	select {
	case r := <-ch:
		if r.err != nil {
			return KVMProbe{Reason: r.err.Error()}
		}
		if r.elapsed > limit {
			return KVMProbe{Elapsed: r.elapsed, Reason: fmt.Sprintf("%s: a 100k-iteration guest loop took %s (limit %s): KVM is too slow here", dev, r.elapsed.Round(time.Millisecond), limit)}
		}
		return KVMProbe{Usable: true, Elapsed: r.elapsed, Reason: fmt.Sprintf("%s: a 100k-iteration guest loop took %s", dev, r.elapsed.Round(time.Microsecond))}
	case <-time.After(limit + 2*time.Second):
		return KVMProbe{Elapsed: limit, Reason: fmt.Sprintf("%s: a 100k-iteration guest loop did not finish within %s: KVM is too slow here", dev, limit+2*time.Second)}
	}
}

func runKVMLoop(dev string) (time.Duration, error) {
	kvm, err := os.OpenFile(dev, os.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer kvm.Close()
	kfd := kvm.Fd()
	if v, err := ioctl(kfd, kvmGetAPIVersion, 0); err != nil || v != 12 {
		return 0, fmt.Errorf("%s: unexpected KVM API version %d (%v)", dev, v, err)
	}
	vmfd, err := ioctl(kfd, kvmCreateVM, 0)
	if err != nil {
		return 0, fmt.Errorf("%s: create vm: %w", dev, err)
	}
	defer unix.Close(int(vmfd))

	const memSize = 0x1000
	mem, err := unix.Mmap(-1, 0, memSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_ANONYMOUS)
	if err != nil {
		return 0, fmt.Errorf("mmap guest memory: %w", err)
	}
	defer unix.Munmap(mem)
	code := append([]byte(nil), probeLoop...)
	*(*uint32)(unsafe.Pointer(&code[2])) = probeIterations
	copy(mem, code)
	region := struct {
		slot, flags             uint32
		guestPhys, size, userVA uint64
	}{size: memSize, userVA: uint64(uintptr(unsafe.Pointer(&mem[0])))}
	if _, err := ioctl(vmfd, kvmSetUserMemRegion, uintptr(unsafe.Pointer(&region))); err != nil {
		return 0, fmt.Errorf("%s: set memory region: %w", dev, err)
	}
	vcpu, err := ioctl(vmfd, kvmCreateVCPU, 0)
	if err != nil {
		return 0, fmt.Errorf("%s: create vcpu: %w", dev, err)
	}
	defer unix.Close(int(vcpu))
	runSize, err := ioctl(kfd, kvmGetVCPUMmapSize, 0)
	if err != nil {
		return 0, fmt.Errorf("%s: vcpu mmap size: %w", dev, err)
	}
	run, err := unix.Mmap(int(vcpu), 0, int(runSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	if err != nil {
		return 0, fmt.Errorf("mmap kvm_run: %w", err)
	}
	defer unix.Munmap(run)

	var sregs [kvmSregsSize]byte
	if _, err := ioctl(vcpu, kvmGetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return 0, fmt.Errorf("%s: get sregs: %w", dev, err)
	}
	// cs is the first kvm_segment: base u64 at 0, selector u16 at 12.
	*(*uint64)(unsafe.Pointer(&sregs[0])) = 0
	*(*uint16)(unsafe.Pointer(&sregs[12])) = 0
	if _, err := ioctl(vcpu, kvmSetSregs, uintptr(unsafe.Pointer(&sregs[0]))); err != nil {
		return 0, fmt.Errorf("%s: set sregs: %w", dev, err)
	}
	var regs [kvmRegsN]uint64
	regs[kvmRegsRIP] = 0
	regs[kvmRegsRIP+1] = 2 // rflags: bit 1 is reserved and set
	if _, err := ioctl(vcpu, kvmSetRegs, uintptr(unsafe.Pointer(&regs[0]))); err != nil {
		return 0, fmt.Errorf("%s: set regs: %w", dev, err)
	}
	start := time.Now()
	for {
		if _, err := ioctl(vcpu, kvmRun, 0); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, fmt.Errorf("%s: run: %w", dev, err)
		}
		reason := *(*uint32)(unsafe.Pointer(&run[8]))
		if reason == kvmExitHlt {
			return time.Since(start), nil
		}
		if time.Since(start) > time.Minute {
			return 0, fmt.Errorf("%s: guest loop exited with reason %d", dev, reason)
		}
	}
}

func ioctl(fd, req, arg uintptr) (uintptr, error) {
	r, _, errno := unix.Syscall(unix.SYS_IOCTL, fd, req, arg)
	if errno != 0 {
		return r, errno
	}
	return r, nil
}

// Accel is the accelerator chosen for a VM and why.
type Accel struct {
	Name     string // "kvm" or "tcg"
	CPUModel string
	Reason   string
	// KernelParams are guest kernel parameters this accelerator calls for.
	KernelParams []string
}

// ResolveAccel turns the configured accel ("auto", "kvm", "tcg") into the
// one QEMU gets. "auto" probes /dev/kvm and falls back to TCG.
func ResolveAccel(want, kvmDev string, limit time.Duration) (Accel, error) {
	switch want {
	case "kvm":
		return Accel{Name: "kvm", CPUModel: "host", Reason: "configured"}, nil
	case "tcg":
		return Accel{Name: "tcg", CPUModel: "max", Reason: "configured", KernelParams: tcgKernelParams()}, nil
	case "auto", "":
		pr := ProbeKVM(kvmDev, limit)
		if pr.Usable {
			return Accel{Name: "kvm", CPUModel: "host", Reason: pr.Reason}, nil
		}
		return Accel{Name: "tcg", CPUModel: "max", Reason: pr.Reason, KernelParams: tcgKernelParams()}, nil
	default:
		return Accel{}, fmt.Errorf("accel %q: want auto, kvm or tcg", want)
	}
}
