package loadsim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// maxBody is the largest accepted control request body in bytes.
const maxBody = 256

// shutdownGrace bounds how long Serve waits for in-flight requests once its context is done.
const shutdownGrace = 5 * time.Second

// Handler returns the HTTP handler: GET /metrics, GET /targets, GET /targets/{namespace}/{deployment}, and PUT .../load and .../queue with a plain number as body.
func (s *Simulator) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))
	mux.HandleFunc("GET /targets", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, s.Snapshot())
	})
	mux.HandleFunc("GET /targets/{namespace}/{deployment}", func(w http.ResponseWriter, r *http.Request) {
		st, err := s.Status(r.PathValue("namespace"), r.PathValue("deployment"))
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, st)
	})
	mux.HandleFunc("PUT /targets/{namespace}/{deployment}/load", s.putHandler("load", s.SetLoad))
	mux.HandleFunc("PUT /targets/{namespace}/{deployment}/queue", s.putHandler("queue", s.SetQueue))
	return mux
}

// putHandler returns a handler that parses the body as a number, applies set and answers with the target's new status.
func (s *Simulator) putHandler(what string, set func(namespace, deployment string, v float64) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ns, dep := r.PathValue("namespace"), r.PathValue("deployment")
		if _, err := s.Status(ns, dep); err != nil {
			writeError(w, err)
			return
		}
		v, err := readNumber(r.Body)
		if err != nil {
			http.Error(w, fmt.Sprintf("loadsim: %s of %s/%s: %v", what, ns, dep, err), http.StatusBadRequest)
			return
		}
		if err := set(ns, dep, v); err != nil {
			writeError(w, err)
			return
		}
		st, err := s.Status(ns, dep)
		if err != nil {
			writeError(w, err)
			return
		}
		writeJSON(w, st)
	}
}

// readNumber reads a body holding one finite number >= 0, surrounded by optional white space.
func readNumber(body io.Reader) (float64, error) {
	b, err := io.ReadAll(io.LimitReader(body, maxBody+1))
	if err != nil {
		return 0, fmt.Errorf("read body: %w", err)
	}
	if len(b) > maxBody {
		return 0, fmt.Errorf("body longer than %d bytes", maxBody)
	}
	text := strings.TrimSpace(string(b))
	if text == "" {
		return 0, errors.New("empty body, want a number")
	}
	v, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, fmt.Errorf("body %q is not a number", text)
	}
	if err := checkValue(v); err != nil {
		return 0, err
	}
	return v, nil
}

// writeError answers with 404 for an unknown target, 400 for an invalid value and 500 otherwise.
func writeError(w http.ResponseWriter, err error) {
	code := http.StatusInternalServerError
	switch {
	case errors.Is(err, ErrUnknownTarget):
		code = http.StatusNotFound
	case errors.Is(err, ErrInvalidValue):
		code = http.StatusBadRequest
	}
	http.Error(w, err.Error(), code)
}

// writeJSON answers 200 with v as indented JSON.
func writeJSON(w http.ResponseWriter, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		http.Error(w, fmt.Sprintf("loadsim: encode response: %v", err), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(append(b, '\n'))
}

// Serve serves Handler on ln (which it closes) until ctx is done, then shuts down gracefully and returns nil; it does not call Run.
func (s *Simulator) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler:           s.Handler(),
		ReadHeaderTimeout: 10 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("loadsim: serve on %s: %w", ln.Addr(), err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownGrace)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		_ = srv.Close()
		<-errc
		return fmt.Errorf("loadsim: shut down server on %s: %w", ln.Addr(), err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("loadsim: serve on %s: %w", ln.Addr(), err)
	}
	return nil
}
