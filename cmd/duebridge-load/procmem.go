package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// procTree returns pid and all its descendants (Dovecot and Radicale fork
// workers; duebridge is one process).
func procTree(root int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		children[ppid] = append(children[ppid], pid)
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// memKB reads a "Key:   N kB" field of a /proc file.
func memKB(path, key string) int64 {
	f, err := os.Open(path)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// Mem is a server's memory at one moment.
type Mem struct {
	RSS   int64 // bytes, root process
	HWM   int64 // peak RSS of the root process
	PSS   int64 // bytes, proportional set size summed over the process tree
	Procs int
}

func readMem(pid int) Mem {
	if pid <= 0 {
		return Mem{}
	}
	p := strconv.Itoa(pid)
	m := Mem{RSS: memKB("/proc/"+p+"/status", "VmRSS") << 10, HWM: memKB("/proc/"+p+"/status", "VmHWM") << 10}
	for _, q := range procTree(pid) {
		m.PSS += memKB("/proc/"+strconv.Itoa(q)+"/smaps_rollup", "Pss") << 10
		m.Procs++
	}
	return m
}

// scrape reads chosen samples of a Prometheus text exposition; a metric
// with labels is summed over them.
func scrape(ctx context.Context, hc *http.Client, url string, names ...string) map[string]float64 {
	out := map[string]float64{}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return out
	}
	resp, err := hc.Do(req)
	if err != nil {
		return out
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		for _, n := range names {
			key, labels, _ := strings.Cut(n, "{")
			if !strings.HasPrefix(line, key) {
				continue
			}
			rest := line[len(key):]
			if rest == "" || (rest[0] != ' ' && rest[0] != '{') {
				continue
			}
			if labels != "" && !strings.Contains(rest, strings.TrimSuffix(labels, "}")) {
				continue
			}
			f := strings.Fields(rest)
			v, err := strconv.ParseFloat(f[len(f)-1], 64)
			if err == nil {
				out[n] += v
			}
		}
	}
	return out
}

// treeCPU is the CPU time (user + system) used by the process tree of root:
// each live process's own time plus that of the children it has reaped
// (cutime, cstime), so a server that forks workers is counted whole and a
// worker that exits between two readings is not lost. 0 if unknown.
func treeCPU(root int) time.Duration {
	if root <= 0 {
		return 0
	}
	var ticks int64
	for _, pid := range procTree(root) {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		if err != nil {
			continue // exited since the listing; its parent's cutime has it once reaped
		}
		// pid (comm) state ppid ... utime stime cutime cstime: fields 14-17.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 15 {
			continue
		}
		for _, k := range f[11:15] {
			n, _ := strconv.ParseInt(k, 10, 64)
			ticks += n
		}
	}
	return time.Duration(ticks) * time.Second / userHZ
}

// userHZ is the unit of /proc/<pid>/stat's times (sysconf(_SC_CLK_TCK)),
// 100 on every Linux this runs on.
const userHZ = 100
