package main

import (
	"bytes"
	"encoding/csv"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/hull-runtime/hull/internal/atomicfile"
)

// measure is one row of the report: hull's samples against a floor's.
type measure struct {
	name, unit string
	// hull and floor are sample keys; floor is "" when there is none.
	hull, floor string
	// target bounds the ratio, or hull's value when there is no floor:
	// "<=1.2", ">=0.5" or "".
	target string
}

var measures = []measure{
	{"sandbox_ready_vs_raw_boot", "ms", "ready_tuned", "raw_boot_tuned", "<=1.2"},
	{"sandbox_ready_9p_vs_raw_boot", "ms", "ready_tuned_9p", "raw_boot_tuned", "<=1.2"},
	{"sandbox_ready_virtiofs_vs_raw_boot", "ms", "ready_tuned_virtiofs", "raw_boot_tuned", "<=1.2"},
	{"tuned_vs_generic_boot", "ms", "ready_tuned", "ready_generic", "<=0.15"},
	{"cli_state_vs_runc", "ms", "cli_state_hull", "cli_state_runc", "<=2"},
	{"idle_pss_mib", "MiB", "pss_one_total", "", "<=60"},
	{"idle_pss_mib_9p", "MiB", "pss_9p_total", "", "<=60"},
	{"idle_pss_mib_virtiofs", "MiB", "pss_virtiofs_total", "", "<=60"},
	{"shim_pod_ready_vs_cli_pod_ready", "ms", "pod_ready_shim", "pod_ready_cli", "<=0.8"},
	{"shim_pod_pss_vs_cli_pod_pss", "MiB", "pod_pss_shim", "pod_pss_cli", "<=0.9"},
	{"9p_seq_read_vs_host", "MiB/s", "9p_read_guest", "9p_read_host", ">=0.5"},
	{"virtiofs_seq_read_vs_host", "MiB/s", "virtiofs_read_guest", "virtiofs_read_host", ">=0.5"},
	{"raw_boot_hull_devices_vs_raw_boot", "ms", "raw_boot_tuned_devices", "raw_boot_tuned", ""},
	{"raw_boot_tuned_vs_generic", "ms", "raw_boot_tuned", "raw_boot_generic", ""},
	{"cli_create_start_vs_raw_boot", "ms", "cli_create_start", "raw_boot_tuned", ""},
	{"cli_list_vs_runc", "ms", "cli_list_hull", "cli_list_runc", "<=2"},
	{"cli_kill_vs_runc", "ms", "cli_kill_hull", "cli_kill_runc", "<=2"},
	{"cli_ps_vs_runc", "ms", "cli_ps_hull", "cli_ps_runc", ""},
	{"cli_delete_force_ms", "ms", "cli_delete_force", "", ""},
	{"container_run_true_ms", "ms", "container_run_true", "", ""},
	{"agent_health_rtt_ms", "ms", "agent_health_rtt", "", ""},
	{"idle_pss_mib_each_of_10", "MiB", "pss_many_each", "", "<=60"},
	{"idle_pss_mib_total_of_10", "MiB", "pss_many_total", "", ""},
	{"templated_ready_vs_cold_ready", "ms", "ready_templated", "ready_cold_template_config", "<=0.25"},
	{"templated_ready_vs_raw_boot", "ms", "ready_templated", "raw_boot_tuned", "<=1"},
	{"templated_ready_vs_default_cold_ready", "ms", "ready_templated", "ready_tuned", ""},
	{"idle_pss_mib_templated_each_of_10", "MiB", "pss_templated_each", "", "<=40"},
	{"idle_pss_mib_templated_total_of_10", "MiB", "pss_templated_total", "", ""},
	{"idle_pss_mib_templated_each_of_10_tb8", "MiB", "pss_templated_tb8_each", "", ""},
	{"templated_create_start_tb8_vs_default", "ms", "templated_tb8_create_start", "templated_create_start", ""},
	{"template_init_ms", "ms", "template_init", "", ""},
	{"9p_seq_write_vs_host", "MiB/s", "9p_write_guest", "9p_write_host", ""},
	{"virtiofs_seq_write_vs_host", "MiB/s", "virtiofs_write_guest", "virtiofs_write_host", ""},
	{"9p_small_files_vs_host", "ms", "9p_small_guest", "9p_small_host", "<=3"},
	{"virtiofs_small_files_vs_host", "ms", "virtiofs_small_guest", "virtiofs_small_host", "<=3"},
}

// result is a measure with its numbers.
type result struct {
	measure
	h, f  Stat
	ratio float64 // 0 without a floor
}

func (b *bench) results() []result {
	var out []result
	for _, m := range measures {
		r := result{measure: m, h: b.s.Stat(m.hull)}
		if r.h.N == 0 {
			continue
		}
		if m.floor != "" {
			if r.f = b.s.Stat(m.floor); r.f.N == 0 {
				continue
			}
			r.ratio = r.h.Med / r.f.Med
		}
		out = append(out, r)
	}
	return out
}

// met reports whether the target holds ("" when there is none).
func (r result) met() string {
	if r.target == "" {
		return ""
	}
	v := r.h.Med
	if r.floor != "" {
		v = r.ratio
	}
	var ok bool
	switch {
	case strings.HasPrefix(r.target, "<="):
		lim, _ := strconv.ParseFloat(r.target[2:], 64)
		ok = v <= lim
	case strings.HasPrefix(r.target, ">="):
		lim, _ := strconv.ParseFloat(r.target[2:], 64)
		ok = v >= lim
	}
	if ok {
		return "yes"
	}
	return "**MISSED**"
}

func num(v float64) string {
	switch a := max(v, -v); {
	case a >= 100:
		return strconv.FormatFloat(v, 'f', 0, 64)
	case a >= 10:
		return strconv.FormatFloat(v, 'f', 1, 64)
	case a >= 1:
		return strconv.FormatFloat(v, 'f', 2, 64)
	default:
		return strconv.FormatFloat(v, 'f', 3, 64)
	}
}

func spread(s Stat) string {
	if s.N == 0 {
		return ""
	}
	return fmt.Sprintf("%s (%s–%s)", num(s.Med), num(s.Min), num(s.Max))
}

func (r result) ratioText() string {
	if r.floor == "" {
		return ""
	}
	return strconv.FormatFloat(r.ratio, 'f', 3, 64)
}

// report writes latest.md, latest.csv and startup.png to out and prints the
// table.
func (b *bench) report(out string, took time.Duration) error {
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	res := b.results()
	table := mainTable(res)

	var csvBuf bytes.Buffer
	w := csv.NewWriter(&csvBuf)
	_ = w.Write([]string{"measure", "hull", "floor", "ratio", "target"})
	for _, r := range res {
		floor := ""
		if r.floor != "" {
			floor = num(r.f.Med)
		}
		_ = w.Write([]string{r.name, num(r.h.Med), floor, r.ratioText(), r.target})
	}
	w.Flush()

	var md strings.Builder
	fmt.Fprintf(&md, "# hull benchmark\n\n%s\n\n", b.header(took))
	md.WriteString("Values are medians of n samples (min–max in brackets); ratio = hull / floor of the medians. " +
		"Times in ms, memory in MiB, throughput in MiB/s.\n\n")
	md.WriteString(table)
	if bd := b.breakdownTable(); bd != "" {
		md.WriteString("\n## Start-up breakdown (tuned kernel)\n\n![start-up](startup.png)\n\n" + bd)
	}
	if tl := b.timelineTable(); tl != "" {
		md.WriteString("\n## Guest boot timeline (one verbose boot each, ms)\n\n" + tl)
	}
	if pss := b.pssTable(); pss != "" {
		md.WriteString("\n## Idle sandbox memory by process\n\n" + pss)
	}
	if tt := b.templatedTable(); tt != "" {
		md.WriteString("\n## A sandbox cloned from a VM template: start-up and memory\n\n" + tt)
	}
	if pods := b.podTable(); pods != "" {
		md.WriteString("\n## A pod through containerd's CRI, by handler\n\n" + pods)
	}
	md.WriteString("\n## How each measure is taken\n\n")
	for _, n := range b.notes {
		md.WriteString("- " + n + "\n")
	}

	files := map[string][]byte{"latest.md": []byte(md.String()), "latest.csv": csvBuf.Bytes()}
	if png, err := b.startupChart(); err != nil {
		return err
	} else if png != nil {
		files["startup.png"] = png
	}
	for name, data := range files {
		if err := atomicfile.Write(filepath.Join(out, name), data, 0o644); err != nil {
			return err
		}
	}
	fmt.Print(table)
	fmt.Printf("\nwrote %s (%s)\n", filepath.Join(out, "latest.md"), took.Round(time.Second))
	return nil
}

func mainTable(res []result) string {
	var t strings.Builder
	t.WriteString("| measure | unit | hull | floor | ratio | target | met |\n| --- | --- | --- | --- | --- | --- | --- |\n")
	for _, r := range res {
		fmt.Fprintf(&t, "| %s | %s | %s | %s | %s | %s | %s |\n", r.name, r.unit, spread(r.h), spread(r.f), r.ratioText(), r.target, r.met())
	}
	return t.String()
}

func (b *bench) breakdownTable() string {
	ready := b.s.Stat("ready_tuned")
	if ready.N == 0 {
		return ""
	}
	var t strings.Builder
	t.WriteString("| step | median ms | min | max | % of sandbox ready |\n| --- | --- | --- | --- | --- |\n")
	for _, st := range startupSteps {
		s := b.s.Stat("step_" + st.key)
		if s.N == 0 {
			continue
		}
		shareRow(&t, st.label, s, ready)
	}
	for _, ref := range []struct{ key, label string }{
		{"ready_tuned", "= sandbox ready (StartSandbox)"},
		{"raw_boot_tuned", "floor: raw boot, spawn -> QEMU exit"},
		{"raw_boot_tuned_devices", "raw boot with hull's devices"},
	} {
		if s := b.s.Stat(ref.key); s.N > 0 {
			shareRow(&t, ref.label, s, ready)
		}
	}
	return t.String()
}

// templatedTable breaks down a templated start and a clone's memory.
func (b *bench) templatedTable() string {
	ready := b.s.Stat("ready_templated")
	if ready.N == 0 {
		return ""
	}
	var t strings.Builder
	t.WriteString("| step | median ms | min | max | % of templated ready |\n| --- | --- | --- | --- | --- |\n")
	for _, st := range templatedSteps {
		if s := b.s.Stat("tstep_" + st.key); s.N > 0 {
			shareRow(&t, st.label, s, ready)
		}
	}
	for _, ref := range []struct{ key, label string }{
		{"ready_templated", "= templated ready (StartSandbox)"},
		{"ready_cold_template_config", "the same sandbox booted cold"},
		{"raw_boot_tuned", "floor: raw boot, spawn -> QEMU exit"},
	} {
		if s := b.s.Stat(ref.key); s.N > 0 {
			shareRow(&t, ref.label, s, ready)
		}
	}
	if b.s.Stat("pss_templated_each").N == 0 {
		return t.String()
	}
	t.WriteString("\n| process of a clone (one of 10 idle) | PSS MiB, median (min–max) | with an 8 MiB translation buffer |\n| --- | --- | --- |\n")
	for _, p := range []struct{ part, label string }{
		{"qemu", "QEMU"}, {"qemu_ram", "  of which guest RAM (the template's, copy-on-write)"},
		{"qemu_tcg", "  of which TCG translation buffer"}, {"qemu_other", "  of which QEMU itself (heap, binary, libraries)"},
		{"monitor", "monitor (hull __monitor)"}, {"proxy", "proxy (hull __proxy)"},
		{"each", "total"},
	} {
		fmt.Fprintf(&t, "| %s | %s | %s |\n", p.label, spread(b.s.Stat("pss_templated_"+p.part)), spread(b.s.Stat("pss_templated_tb8_"+p.part)))
	}
	fmt.Fprintf(&t, "| `hull create` + `start` of the container, ms | %s | %s |\n",
		spread(b.s.Stat("templated_create_start")), spread(b.s.Stat("templated_tb8_create_start")))
	return t.String()
}

func (b *bench) pssTable() string {
	if b.s.Stat("pss_one_total").N == 0 {
		return ""
	}
	var t strings.Builder
	t.WriteString("| process | PSS MiB, median (min–max) |\n| --- | --- |\n")
	for _, p := range []struct{ key, label string }{
		{"pss_one_qemu", "QEMU"}, {"pss_one_qemu_ram", "  of which guest RAM"},
		{"pss_one_qemu_tcg", "  of which TCG translation buffer"}, {"pss_one_qemu_other", "  of which QEMU itself (heap, binary, libraries)"},
		{"pss_one_monitor", "monitor (hull __monitor)"},
		{"pss_one_proxy", "proxy (hull __proxy)"}, {"pss_one_virtiofsd", "virtiofsd (both processes)"}, {"pss_one_total", "total"},
	} {
		fmt.Fprintf(&t, "| %s | %s |\n", p.label, spread(b.s.Stat(p.key)))
	}
	return t.String()
}

// header says when, where and on what the numbers were taken.
func (b *bench) header(took time.Duration) string {
	rev, _ := exec.Command("git", "-C", b.build, "describe", "--always", "--dirty").Output()
	qemu, _ := exec.Command(b.qemu, "--version").Output()
	kernel, _ := os.ReadFile("/proc/sys/kernel/osrelease")
	return fmt.Sprintf("Run %s, n=%d, took %s; hull %s; host kernel %s, %d CPUs; %s; TCG (no usable KVM).",
		time.Now().UTC().Format("2006-01-02 15:04 MST"), b.n, took.Round(time.Second), strings.TrimSpace(string(rev)),
		strings.TrimSpace(string(kernel)), runtime.NumCPU(), firstLine(qemu))
}

func firstLine(b []byte) string {
	s, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(s)
}

// shareRow writes one step of a start-up breakdown: its spread and its
// share of the whole.
func shareRow(t *strings.Builder, label string, s, whole Stat) {
	fmt.Fprintf(t, "| %s | %s | %s | %s | %.0f%% |\n", label, num(s.Med), num(s.Min), num(s.Max), 100*s.Med/whole.Med)
}
