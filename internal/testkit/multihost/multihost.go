// Package multihost starts several keter "hosts" on one machine for tests
// and benchmarks of keter deploy --hosts: each host is a network
// namespace with its own sandbox systemd (own /run, own PID namespace and
// cgroup subtree), its own keter as a unit, keter's managed nginx, its
// own nftables table and an sshd; a bridge in an operator namespace joins
// them, and a plain nginx load balancer there spreads requests over the
// hosts. The operator's keter CLI and ssh run in that namespace too, with
// a generated ssh config (keys and known_hosts made per cluster).
//
// Nothing listens outside the namespaces it makes, and Start's cleanup
// removes everything (namespaces, bridge, systemds, files) even when the
// test fails. It needs root, iproute2, nginx and openssh-server.
package multihost

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// T is what the harness needs of a test (testing.TB has it).
type T interface {
	Helper()
	Cleanup(func())
	Fatalf(format string, args ...any)
	Logf(format string, args ...any)
	Failed() bool
}

// Options shape a cluster.
type Options struct {
	Hosts int    // how many hosts; 0 means 3
	Keter string // the keter binary each host runs (and the operator)
	Nginx string // nginx binary; "" means /usr/sbin/nginx
	// Dir holds every file of the cluster (keter roots must be outside
	// /tmp: PrivateTmp units cannot see it); it is removed at cleanup.
	Dir string
	// KeterYAML is appended to each host's keter-config.yaml.
	KeterYAML string
	// Listeners is each host's listeners: list (YAML); nil means plain
	// HTTP on the host's address, port 80. An ACME scenario adds
	// `{host: IP, port: 443, acme: true}`.
	Listeners func(h *Host) string
	// KeterEnv are extra KEY=VALUE for each host's keter unit.
	KeterEnv []string
	// Setup runs for each host once its namespace and systemd are up,
	// before its keter starts: e.g. Forward a service into the host.
	Setup func(c *Cluster, h *Host) error
}

// Subnet is the bridge's /24; the operator namespace is .254, host i
// (from 1) is .i. Subnet6 is the same for IPv6 (a /64).
const (
	Subnet  = "10.77.0."
	Subnet6 = "fd77::"
)

// Cluster is a running set of hosts behind a load balancer.
type Cluster struct {
	t     T
	o     Options
	Token string
	Ops   string // the operator namespace: bridge, load balancer, ssh client
	Hosts []*Host
	// LB is the load balancer's address, inside Ops.
	LB string
	// SSHConfig is the operator's ssh config: one alias per host.
	SSHConfig string
	binDir    string // holds the ssh wrapper put first on the CLI's PATH
	lb        *exec.Cmd
	sandbox   string
}

// Host is one keter host.
type Host struct {
	Name   string // its ssh_config alias: h1, h2, ...
	IP     string
	IP6    string // sshd listens here too
	NS     string
	Dir    string // its sandbox folder (run/, units/)
	Root   string // its keter root
	Config string // its keter-config.yaml
	PID    int    // its systemd, as this process sees it
	gone   bool
}

// Start builds the cluster; its cleanup tears it all down.
func Start(t T, o Options) *Cluster {
	t.Helper()
	if o.Hosts == 0 {
		o.Hosts = 3
	}
	if o.Nginx == "" {
		o.Nginx = "/usr/sbin/nginx"
	}
	_, self, _, _ := runtime.Caller(0)
	tok := token()
	c := &Cluster{t: t, o: o, Token: tok, Ops: "kt-" + tok + "-ops", LB: Subnet + "254:80",
		sandbox: filepath.Join(filepath.Dir(self), "..", "..", "..", "scripts", "sandbox.sh")}
	t.Cleanup(c.teardown)
	t0 := time.Now()
	c.must("ip", "netns", "add", c.Ops)
	c.must("ip", "-n", c.Ops, "link", "set", "lo", "up")
	c.must("ip", "-n", c.Ops, "link", "add", "br0", "type", "bridge")
	c.must("ip", "-n", c.Ops, "addr", "add", Subnet+"254/24", "dev", "br0")
	c.must("ip", "-n", c.Ops, "addr", "add", Subnet6+"254/64", "dev", "br0", "nodad")
	c.must("ip", "-n", c.Ops, "link", "set", "br0", "up")
	ssh := filepath.Join(o.Dir, "ssh")
	c.binDir = filepath.Join(o.Dir, "bin")
	for _, d := range []string{ssh, c.binDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatalf("%v", err)
		}
	}
	c.must("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "keter-test-operator", "-f", filepath.Join(ssh, "id"))
	for i := 1; i <= o.Hosts; i++ {
		h := &Host{Name: fmt.Sprintf("h%d", i), IP: fmt.Sprintf("%s%d", Subnet, i), IP6: fmt.Sprintf("%s%d", Subnet6, i), NS: fmt.Sprintf("kt-%s-h%d", tok, i),
			Dir: filepath.Join(o.Dir, fmt.Sprintf("h%d", i))}
		h.Root = filepath.Join(h.Dir, "root")
		h.Config = filepath.Join(h.Root, "keter-config.yaml")
		c.Hosts = append(c.Hosts, h)
		c.wire(h, i)
	}
	c.writeSSHConfig(ssh)
	var wg sync.WaitGroup
	errs := make([]error, len(c.Hosts))
	for i, h := range c.Hosts {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.boot(h, ssh)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatalf("%v", err)
		}
	}
	c.startLB()
	for _, h := range c.Hosts {
		c.waitSSH(h)
	}
	t.Logf("multihost: %d hosts up in %.1fs", len(c.Hosts), time.Since(t0).Seconds())
	return c
}

// wire makes host i's namespace and its veth on the bridge.
func (c *Cluster) wire(h *Host, i int) {
	c.must("ip", "netns", "add", h.NS)
	veth := fmt.Sprintf("vh%d", i)
	c.must("ip", "-n", c.Ops, "link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", h.NS)
	c.must("ip", "-n", c.Ops, "link", "set", veth, "master", "br0", "up")
	c.must("ip", "-n", h.NS, "link", "set", "lo", "up")
	c.must("ip", "-n", h.NS, "addr", "add", h.IP+"/24", "dev", "eth0")
	c.must("ip", "-n", h.NS, "addr", "add", h.IP6+"/64", "dev", "eth0", "nodad")
	c.must("ip", "-n", h.NS, "link", "set", "eth0", "up")
}

// boot starts the host's systemd inside its namespace, then sshd and
// keter as its units.
func (c *Cluster) boot(h *Host, ssh string) error {
	// tmp: the host's sessions' TMPDIR, so a killed one leaves nothing
	// in the machine's /tmp.
	for _, d := range []string{h.Dir, h.Root, filepath.Join(h.Dir, "tmp")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	if out, err := exec.Command("ip", "netns", "exec", h.NS, "bash", c.sandbox, "up", h.Dir).CombinedOutput(); err != nil {
		return fmt.Errorf("booting %s's systemd: %v: %s", h.Name, err, out)
	}
	pid, err := os.ReadFile(filepath.Join(h.Dir, "pid"))
	if err != nil {
		return err
	}
	fmt.Sscan(string(pid), &h.PID)
	// sshd: its own host key, the operator's key for root.
	key := filepath.Join(h.Dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", h.Name, "-f", key).CombinedOutput(); err != nil {
		return fmt.Errorf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(filepath.Join(ssh, "id.pub"))
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(h.Dir, "authorized_keys"), pub, 0o600); err != nil {
		return err
	}
	sshd := fmt.Sprintf(`ListenAddress %s:22
ListenAddress [%s]:22
HostKey %s
AuthorizedKeysFile %s
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile none
SetEnv PATH=%s:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin KETER_CONFIG=%s TMPDIR=%s
`, h.IP, h.IP6, key, filepath.Join(h.Dir, "authorized_keys"), filepath.Dir(c.o.Keter), h.Config, filepath.Join(h.Dir, "tmp"))
	if err := os.WriteFile(filepath.Join(h.Dir, "sshd_config"), []byte(sshd), 0o600); err != nil {
		return err
	}
	if out, err := h.Exec("systemd-run", "--unit", "sshd-test", "-p", "RuntimeDirectory=sshd", "/usr/sbin/sshd", "-D", "-e", "-f", filepath.Join(h.Dir, "sshd_config")); err != nil {
		return fmt.Errorf("starting sshd on %s: %v: %s", h.Name, err, out)
	}
	if c.o.Setup != nil {
		if err := c.o.Setup(c, h); err != nil {
			return fmt.Errorf("setting up %s: %w", h.Name, err)
		}
	}
	listeners := fmt.Sprintf("  - {host: %s, port: 80}\n", h.IP)
	if c.o.Listeners != nil {
		listeners = c.o.Listeners(h)
	}
	cfg := fmt.Sprintf("root: %s\nlisteners:\n%sgraceful-drain-micros: 1000000\nnginx:\n  mode: managed\n  binary: %s\n  service: keter-nginx.service\n  nft-table: keter_test\nport-manager:\n  reserve: false\n  ranges: [{from: 20000, to: 20299}]\n%s",
		h.Root, listeners, c.o.Nginx, c.o.KeterYAML)
	if err := os.WriteFile(h.Config, []byte(cfg), 0o644); err != nil {
		return err
	}
	run := []string{"systemd-run", "--unit", "keter.service", "-p", "Type=notify", "-p", "Restart=always", "-p", "RestartSec=100ms",
		"-p", "KillMode=process", "-p", "TimeoutStartSec=120"}
	for _, e := range c.o.KeterEnv {
		run = append(run, "--setenv="+e)
	}
	if out, err := h.Exec(append(run, c.o.Keter, "run", h.Config)...); err != nil {
		out2, _ := h.Exec("journalctl", "--no-pager", "-o", "cat", "-u", "keter.service")
		return fmt.Errorf("starting keter on %s: %v: %s\n%s", h.Name, err, out, out2)
	}
	return nil
}

// Exec runs a command inside the host: its PID, mount and network
// namespaces (so systemctl, journalctl and nft see the host's own).
func (h *Host) Exec(args ...string) ([]byte, error) {
	return exec.Command("nsenter", append([]string{"-t", fmt.Sprint(h.PID), "-m", "-p", "-n", "--"}, args...)...).CombinedOutput()
}

func (c *Cluster) writeSSHConfig(ssh string) {
	var cfg, known strings.Builder
	for _, h := range c.Hosts {
		fmt.Fprintf(&cfg, "Host %s\n  HostName %s\n", h.Name, h.IP)
	}
	fmt.Fprintf(&cfg, "Host *\n  User root\n  IdentityFile %s\n  IdentitiesOnly yes\n  UserKnownHostsFile %s\n  StrictHostKeyChecking yes\n  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n",
		filepath.Join(ssh, "id"), filepath.Join(ssh, "known_hosts"))
	c.SSHConfig = filepath.Join(ssh, "config")
	c.mustWrite(c.SSHConfig, cfg.String(), 0o600)
	// Host keys are made at boot: known_hosts is written by waitSSH.
	c.mustWrite(filepath.Join(ssh, "known_hosts"), known.String(), 0o600)
	// The CLI runs plain `ssh` from PATH, as on an operator's machine;
	// this one reads the cluster's config.
	c.mustWrite(filepath.Join(c.binDir, "ssh"), fmt.Sprintf("#!/bin/sh\nexec /usr/bin/ssh -F %s \"$@\"\n", c.SSHConfig), 0o755)
}

// waitSSH records the host's key and waits until ssh reaches it.
func (c *Cluster) waitSSH(h *Host) {
	c.t.Helper()
	pub, err := os.ReadFile(filepath.Join(h.Dir, "ssh_host_ed25519_key.pub"))
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	f, err := os.OpenFile(filepath.Join(filepath.Dir(c.SSHConfig), "known_hosts"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		c.t.Fatalf("%v", err)
	}
	fields := strings.Fields(string(pub))
	fmt.Fprintf(f, "%s,%s %s %s\n", h.IP, h.IP6, fields[0], fields[1])
	f.Close()
	var out []byte
	for range 100 {
		out, err = c.Command("ssh", h.Name, "true").CombinedOutput()
		if err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.t.Fatalf("ssh %s: %v: %s", h.Name, err, out)
}

// startLB runs a plain nginx in the operator namespace in front of every
// host's keter: no upstream keep-alive, so each request is a new
// connection to a host's nginx.
func (c *Cluster) startLB() {
	c.t.Helper()
	dir := filepath.Join(c.o.Dir, "lb")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		c.t.Fatalf("%v", err)
	}
	var up strings.Builder
	for _, h := range c.Hosts {
		fmt.Fprintf(&up, "    server %s:80 max_fails=0;\n", h.IP)
	}
	conf := fmt.Sprintf(`daemon off;
user root;
worker_processes 1;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log error;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path %[1]s/body;
  proxy_temp_path %[1]s/proxy;
  fastcgi_temp_path %[1]s/fastcgi;
  uwsgi_temp_path %[1]s/uwsgi;
  scgi_temp_path %[1]s/scgi;
  client_max_body_size 0;
  client_body_buffer_size 128k;
  upstream hosts {
%[2]s  }
  server {
    listen %[3]s;
    location / {
      proxy_pass http://hosts;
      proxy_http_version 1.1;
      proxy_set_header Host $host;
      proxy_buffering off;
    }
  }
}
`, dir, up.String(), c.LB)
	c.mustWrite(filepath.Join(dir, "nginx.conf"), conf, 0o600)
	c.lb = c.Command(c.o.Nginx, "-p", dir, "-c", filepath.Join(dir, "nginx.conf"))
	c.lb.SysProcAttr = &unix.SysProcAttr{Setpgid: true}
	if err := c.lb.Start(); err != nil {
		c.t.Fatalf("starting the load balancer: %v", err)
	}
	for range 100 {
		if conn, err := c.Dial(context.Background(), "tcp", c.LB); err == nil {
			conn.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
	c.t.Fatalf("the load balancer does not listen on %s: %s", c.LB, log)
}

// Command is a command in the operator namespace, with the cluster's ssh
// first on PATH.
func (c *Cluster) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.Ops, name}, args...)...)
	cmd.Env = append(os.Environ(), "PATH="+c.binDir+":"+os.Getenv("PATH"))
	return cmd
}

// Keter runs the keter CLI as an operator would, in the operator
// namespace; it returns its combined output and exit error.
func (c *Cluster) Keter(args ...string) (string, error) {
	out, err := c.Command(c.o.Keter, args...).CombinedOutput()
	return string(out), err
}

// Dial connects from the operator namespace (e.g. to the load balancer).
func (c *Cluster) Dial(ctx context.Context, network, addr string) (net.Conn, error) {
	var conn net.Conn
	err := inNS(c.Ops, func() (err error) {
		var d net.Dialer
		conn, err = d.DialContext(ctx, network, addr)
		return err
	})
	return conn, err
}

// Kill tears a host down at once: its systemd and everything under it,
// then its namespace and link. The host's files stay until cleanup.
func (c *Cluster) Kill(h *Host) {
	if h.gone {
		return
	}
	h.gone = true
	if h.PID > 0 {
		unix.Kill(h.PID, unix.SIGKILL)
		for range 200 {
			if unix.Kill(h.PID, 0) != nil {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	exec.Command("ip", "netns", "del", h.NS).Run()
}

func (c *Cluster) teardown() {
	t0 := time.Now()
	if c.t.Failed() {
		for _, h := range c.Hosts {
			if !h.gone && h.PID > 0 {
				out, _ := h.Exec("journalctl", "--no-pager", "-o", "cat", "-n", "60", "-u", "keter.service")
				c.t.Logf("%s keter log:\n%s", h.Name, out)
			}
		}
		if log, err := os.ReadFile(filepath.Join(c.o.Dir, "lb", "error.log")); err == nil {
			c.t.Logf("load balancer log:\n%s", log)
		}
	}
	if c.lb != nil && c.lb.Process != nil {
		unix.Kill(-c.lb.Process.Pid, unix.SIGKILL)
		c.lb.Wait()
	}
	for _, h := range c.Hosts {
		c.Kill(h)
	}
	exec.Command("ip", "netns", "del", c.Ops).Run()
	os.RemoveAll(c.o.Dir)
	c.t.Logf("multihost: torn down in %.1fs", time.Since(t0).Seconds())
}

// Leftovers lists what of the cluster still exists: namespaces, host
// systemds. Call it after cleanup (e.g. from an earlier-registered one).
func (c *Cluster) Leftovers() []string {
	var left []string
	out, _ := exec.Command("ip", "netns", "list").Output()
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, c.Token) {
			left = append(left, "netns "+l)
		}
	}
	for _, h := range c.Hosts {
		if h.PID > 0 && unix.Kill(h.PID, 0) == nil {
			left = append(left, fmt.Sprintf("%s's systemd (pid %d)", h.Name, h.PID))
		}
	}
	if c.lb != nil && c.lb.Process != nil && unix.Kill(c.lb.Process.Pid, 0) == nil {
		left = append(left, "the load balancer")
	}
	if _, err := os.Stat(c.o.Dir); err == nil {
		left = append(left, "folder "+c.o.Dir)
	}
	return left
}

func (c *Cluster) must(name string, args ...string) {
	c.t.Helper()
	if out, err := exec.Command(name, args...).CombinedOutput(); err != nil {
		c.t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

func (c *Cluster) mustWrite(path, data string, mode os.FileMode) {
	c.t.Helper()
	if err := os.WriteFile(path, []byte(data), mode); err != nil {
		c.t.Fatalf("%v", err)
	}
}

func token() string {
	b := make([]byte, 3)
	f, _ := os.Open("/dev/urandom")
	f.Read(b)
	f.Close()
	return fmt.Sprintf("%x", b)
}
