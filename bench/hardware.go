package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Hardware names the machine a measurement ran on.
type Hardware struct {
	CPU        string  `json:"cpu"`
	Cores      int     `json:"cores"`
	GOMAXPROCS int     `json:"gomaxprocs,omitempty"`
	MemGiB     float64 `json:"mem_gib"`
	GPU        string  `json:"gpu,omitempty"` // nvidia-smi's name, "" without one
	GPUMemGiB  float64 `json:"gpu_mem_gib,omitempty"`
	Backend    string  `json:"backend"`
}

// DetectHardware reads /proc/cpuinfo, /proc/meminfo and nvidia-smi (when present).
func DetectHardware() Hardware {
	h := Hardware{Cores: runtime.NumCPU(), GOMAXPROCS: runtime.GOMAXPROCS(0)}
	if f, err := os.Open("/proc/cpuinfo"); err == nil {
		s := bufio.NewScanner(f)
		for s.Scan() {
			if k, v, ok := strings.Cut(s.Text(), ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPU = strings.TrimSpace(v)
				break
			}
		}
		f.Close()
	}
	if kb := procField("/proc/meminfo", "MemTotal"); kb > 0 {
		h.MemGiB = round(float64(kb)/(1<<20), 1)
	}
	h.GPU, h.GPUMemGiB = gpuName()
	return h
}

func gpuName() (string, float64) {
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		return "", 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=name,memory.total", "--format=csv,noheader,nounits").Output()
	if err != nil {
		return "", 0
	}
	line, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
	name, mem, _ := strings.Cut(line, ",")
	mib, _ := strconv.ParseFloat(strings.TrimSpace(mem), 64)
	return strings.TrimSpace(name), round(mib/1024, 1)
}

// procField returns a "Key: N kB" value of a /proc file in kB, 0 if absent.
func procField(path, key string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && k == key {
			f := strings.Fields(v)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// ResetPeakRSS sets the process's peak RSS (VmHWM) back to its current RSS, so that the next
// PeakRSSMiB is the peak of one section (Linux ≥ 4.0: writing 5 to clear_refs).
func ResetPeakRSS() { _ = os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

// PeakRSSMiB is VmHWM in MiB.
func PeakRSSMiB() float64 { return round(float64(procField("/proc/self/status", "VmHWM"))/1024, 1) }

// GPUMemSampler polls nvidia-smi's memory.used of GPU 0 until Stop and keeps the peak. It is
// the only device-memory figure go-xla v0.1.4 allows (PJRT's device memory stats are not
// exposed). With XLA's default BFC allocator the figure is the pool's high-water mark.
type GPUMemSampler struct {
	mu     sync.Mutex
	peak   float64
	cancel context.CancelFunc
	done   chan struct{}
}

// StartGPUMemSampler starts sampling every 100 ms; it returns nil without nvidia-smi.
func StartGPUMemSampler() *GPUMemSampler {
	if _, err := exec.LookPath("nvidia-smi"); err != nil {
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &GPUMemSampler{cancel: cancel, done: make(chan struct{})}
	cmd := exec.CommandContext(ctx, "nvidia-smi", "--query-gpu=memory.used", "--format=csv,noheader,nounits", "-lms", "100", "-i", "0")
	out, err := cmd.StdoutPipe()
	if err != nil || cmd.Start() != nil {
		cancel()
		return nil
	}
	go func() {
		defer close(s.done)
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if v, err := strconv.ParseFloat(strings.TrimSpace(sc.Text()), 64); err == nil {
				s.mu.Lock()
				s.peak = max(s.peak, v)
				s.mu.Unlock()
			}
		}
		_ = cmd.Wait()
	}()
	return s
}

// Reset restarts the peak.
func (s *GPUMemSampler) Reset() {
	if s == nil {
		return
	}
	s.mu.Lock()
	s.peak = 0
	s.mu.Unlock()
}

// PeakMiB returns the peak since the last Reset (0 without a sampler).
func (s *GPUMemSampler) PeakMiB() float64 {
	if s == nil {
		return 0
	}
	time.Sleep(150 * time.Millisecond) // one more sample after the section
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peak
}

// Stop ends sampling.
func (s *GPUMemSampler) Stop() {
	if s == nil {
		return
	}
	s.cancel()
	<-s.done
}

// PeakFLOPS is the dense peak that MFU divides by, and where the number came from.
type PeakFLOPS struct {
	TFLOPS float64 `json:"tflops"`
	Source string  `json:"source"`
}

// peakTable holds dense (no sparsity) tensor-core peaks per GPU name substring and dtype
// (vendor datasheets; peers.md §3.2). float32 uses the plain FP32 rate (XLA uses TF32 only
// when asked).
var peakTable = []struct {
	gpu          string
	bf16, fp32   float64
	sourceDetail string
}{
	{"H200", 989, 67, "H200 SXM"},
	{"H100", 989, 67, "H100 SXM"},
	{"A100", 312, 19.5, "A100 SXM"},
	{"L40S", 362, 91.6, "L40S"},
	{"A10G", 70, 35, "A10G"},
	{"4090", 165, 82.6, "RTX 4090"},
}

// LookupPeak returns the peak for a GPU name and dtype ("bfloat16" or "float32"), or a zero
// PeakFLOPS when the table has none (a CPU, an unknown GPU): pass -peak-tflops then.
func LookupPeak(gpu, dtype string) PeakFLOPS {
	for _, p := range peakTable {
		if gpu != "" && strings.Contains(gpu, p.gpu) {
			if dtype == "bfloat16" {
				return PeakFLOPS{p.bf16, "table: " + p.sourceDetail + " bf16 dense"}
			}
			return PeakFLOPS{p.fp32, "table: " + p.sourceDetail + " fp32 (non-tensor-core)"}
		}
	}
	return PeakFLOPS{}
}

func round(x float64, digits int) float64 {
	p := 1.0
	for i := 0; i < digits; i++ {
		p *= 10
	}
	if x < 0 {
		return -float64(int64(-x*p+0.5)) / p
	}
	return float64(int64(x*p+0.5)) / p
}
