package serve

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync/atomic"
	"time"
)

// Server answers the HTTP API over a loaded set of models.
type Server struct {
	opts     Options
	models   *Models
	sched    *Scheduler
	metrics  *metrics
	images   imageSource
	eos      map[int32]bool
	draining atomic.Bool
	mux      *http.ServeMux
}

// New starts the scheduler's worker and routes the endpoints.
func New(ms *Models, o Options) *Server {
	m := newMetrics(o.MaxBatch)
	s := &Server{opts: o, models: ms, metrics: m, sched: newScheduler(ms, o, m), eos: map[int32]bool{},
		images: imageSource{AllowRemote: o.AllowRemoteImages, RemoteTimeout: time.Duration(o.RemoteTimeoutS) * time.Second,
			MaxBytes: o.MaxImageBytes, Root: o.ImageRoot}}
	for _, e := range ms.Generation.EOSTokenIDs {
		s.eos[int32(e)] = true
	}
	s.mux = http.NewServeMux()
	s.route("POST /v1/chat/completions", "chat_completions", s.chatCompletions)
	s.route("GET /v1/models", "models", s.listModels)
	s.route("GET /v1/models/{id...}", "models", s.getModel)
	s.route("POST /generate", "generate", s.tgiGenerate)
	s.route("POST /generate_stream", "generate_stream", s.tgiGenerateStream)
	s.route("POST /{$}", "generate_compat", s.tgiCompat) // text_generation.Client posts here
	s.route("GET /info", "info", s.tgiInfo)
	s.route("GET /health", "health", s.health)
	s.route("GET /metrics", "metrics", s.writeMetrics)
	s.mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, &apiError{Status: http.StatusNotFound, Type: "invalid_request_error",
			Message: fmt.Sprintf("no route %s %s (see /v1/chat/completions, /v1/models, /generate, /health, /metrics)", r.Method, truncate(r.URL.Path, 80))})
	})
	return s
}

// Handler is the server's http.Handler.
func (s *Server) Handler() http.Handler { return s.mux }

// BeginShutdown refuses new generation requests (503) and lets the queue drain; /health turns
// 503 so that a load balancer stops sending.
func (s *Server) BeginShutdown() {
	s.draining.Store(true)
	s.sched.close()
}

// Wait returns when every admitted request has been decoded (after BeginShutdown), or ctx ends.
func (s *Server) Wait(ctx context.Context) error { return s.sched.wait(ctx) }

// route registers a handler that counts its answers by status code.
func (s *Server) route(pattern, name string, h http.HandlerFunc) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		defer func() {
			if p := recover(); p != nil {
				// No request may take the process down; the client gets a 500 if nothing was sent yet.
				if sw.status == 0 {
					writeError(sw, fmt.Errorf("internal error: %v", p))
				}
			}
			if sw.status == 0 {
				sw.status = http.StatusOK
			}
			s.metrics.request(name, sw.status)
		}()
		h(sw, r)
	})
}

// statusWriter remembers the status code and passes Flush through for streaming.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

func (w *statusWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

// readBody reads a request body within the size limit (413 beyond it).
func (s *Server) readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.opts.MaxRequestBytes))
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: "invalid_request_error", Code: "request_too_large",
			Message: fmt.Sprintf("the request body is larger than the server's limit of %d bytes (serve.max_request_bytes)", s.opts.MaxRequestBytes)}
	}
	if err != nil {
		return nil, badRequest("", "reading the request body: %v", err)
	}
	return body, nil
}

func (s *Server) listModels(w http.ResponseWriter, r *http.Request) {
	var out []map[string]any
	for _, m := range s.models.list {
		out = append(out, modelObject(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": out})
}

func (s *Server) getModel(w http.ResponseWriter, r *http.Request) {
	m, err := s.models.lookup(r.PathValue("id"))
	if err != nil {
		e := asAPIError(err)
		e.Status = http.StatusNotFound
		writeError(w, e)
		return
	}
	writeJSON(w, http.StatusOK, modelObject(m))
}

func modelObject(m *servedModel) map[string]any {
	o := map[string]any{"id": m.Name, "object": "model", "created": m.Created, "owned_by": "idefics2",
		"max_model_len": m.Config.Text.MaxPositionEmbeddings}
	if m.Adapter != "" {
		// vLLM's way of listing a LoRA adapter: its parent is the base model.
		o["parent"] = m.Parent
		o["root"] = m.Adapter
	}
	return o
}

func (s *Server) health(w http.ResponseWriter, r *http.Request) {
	if s.draining.Load() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"status": "shutting_down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "queue_depth": s.metrics.queueDepth.Load()})
}

func (s *Server) writeMetrics(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
	s.metrics.write(w)
}
