package activator

import (
	"net/http"
	"time"
)

// NewServer serves h over HTTP/1.1 and cleartext HTTP/2 (h2c, prior knowledge).
func NewServer(h http.Handler) *http.Server {
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	return &http.Server{Handler: h, Protocols: &p, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
}
