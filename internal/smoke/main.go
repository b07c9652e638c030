package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/hull-runtime/hull/agentproto"
	"github.com/hull-runtime/hull/hypervisor"
)

func main() {
	dir, _ := os.MkdirTemp("", "smoke")
	defer os.RemoveAll(dir)
	os.MkdirAll(dir+"/share", 0o755)
	cfg := hypervisor.Config{Path: "qemu-system-x86_64", Machine: "q35", Accel: "tcg", CPUModel: "max", VCPUs: 1, MemoryMiB: 512,
		Kernel: os.Args[1], Initrd: os.Args[2], KernelParams: []string{"console=ttyS0", "quiet", "panic=1", "hull.port=hull.agent", "hull.share=hullshare"},
		QMPSocket: dir + "/qmp.sock", ConsoleLog: dir + "/console.log",
		Agent: hypervisor.AgentDevice{Transport: "virtio-serial", SocketPath: dir + "/agent.sock", PortName: "hull.agent"},
		Share: &hypervisor.ShareDevice{Path: dir + "/share", Tag: "hullshare"}}
	q := hypervisor.New(cfg, hypervisor.WithLogger(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))))
	t0 := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := q.Start(ctx); err != nil {
		fmt.Println("start:", err)
		return
	}
	defer q.Stop(context.Background())
	fmt.Println("qmp", time.Since(t0))
	conn, err := agentproto.DialUnix(ctx, cfg.Agent.SocketPath)
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := q.WaitAgentPort(ctx); err != nil {
		fmt.Println(err)
		b, _ := os.ReadFile(cfg.ConsoleLog)
		fmt.Println(string(b))
		return
	}
	fmt.Println("port open", time.Since(t0))
	c := agentproto.NewClient(conn)
	h, err := c.Health(ctx, &agentproto.HealthRequest{})
	fmt.Println("health", h, err, time.Since(t0))
	d, err := c.GuestDetails(ctx, &agentproto.GuestDetailsRequest{})
	fmt.Println("details", d, err, time.Since(t0))
	_, err = c.DestroySandbox(ctx, &agentproto.DestroySandboxRequest{})
	fmt.Println("destroy", err)
	select {
	case <-q.Done():
		fmt.Println("exited", time.Since(t0))
	case <-time.After(5 * time.Second):
		fmt.Println("no exit")
	}
	b, _ := os.ReadFile(cfg.ConsoleLog)
	fmt.Println(string(b))
}
