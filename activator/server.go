package activator

import (
	"net/http"
	"time"
)

// NewServer serves h over HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge).
//
// It has no ReadTimeout on purpose: that would cut long uploads to awake
// targets, whose bodies stream to the target as they arrive (held in memory
// no more than the proxy's copy buffer). A held body, which is kept in
// memory, is read under a deadline of its own instead (Options.BodyReadTimeout,
// set per request through http.ResponseController), and headers must arrive
// within ReadHeaderTimeout.
func NewServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}
