package adapter

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"strconv"
	"sync"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/prometheus/common/model"
)

// Sample is one element of an instant vector, decoded only as far as the adapter needs it.
type Sample struct {
	Object    string       // the value of the one label asked for; "" when the series lacks it
	Labels    model.Metric // every label, only when all were asked for (external metrics)
	Value     float64
	Timestamp model.Time
}

// apiResponse is the envelope of a Prometheus /api/v1/query answer.
type apiResponse struct {
	Status     string
	ErrorType  string
	Error      string
	ResultType string
	Samples    []Sample
	Stats      QueryStats
}

// QueryStats is what Prometheus reports of its own work on a query (stats=all): zero when the
// backend reports none (VictoriaMetrics, Thanos and others answer without it or in another shape).
type QueryStats struct {
	EvalSeconds float64 // data.stats.timings.evalTotalTime
	Samples     int64   // data.stats.samples.totalQueryableSamples
}

// readers are reused across responses; a decode holds one for its duration only.
var readers = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, 32<<10) }}

// decodeQuery reads a /api/v1/query answer from r as a stream. Of each sample it keeps the value,
// the timestamp and the value of label (or, with all, every label); no other label is decoded
// into memory, so an answer costs one string per sample. Values are parsed exactly as
// prometheus/common/model parses them, so they equal what the Prometheus client returns.
func decodeQuery(r io.Reader, label string, all bool) (*apiResponse, error) {
	br := readers.Get().(*bufio.Reader)
	br.Reset(r)
	d := &decoder{r: br, label: label, all: all}
	out, err := d.response()
	br.Reset(nil)
	readers.Put(br)
	return out, err
}

type decoder struct {
	r     *bufio.Reader
	buf   []byte // scratch for the string being read
	label string
	all   bool
}

var errSyntax = errors.New("malformed JSON")

func (d *decoder) response() (*apiResponse, error) {
	out := &apiResponse{}
	var result bool
	err := d.object(func(key []byte) error {
		switch string(key) {
		case "status":
			s, err := d.str()
			out.Status = s
			return err
		case "errorType":
			s, err := d.str()
			out.ErrorType = s
			return err
		case "error":
			s, err := d.str()
			out.Error = s
			return err
		case "data":
			c, err := d.peek()
			if err != nil || c == 'n' {
				return d.skip()
			}
			return d.object(func(key []byte) error {
				switch string(key) {
				case "resultType":
					s, err := d.str()
					out.ResultType = s
					return err
				case "result":
					result = true
					return d.result(out)
				case "stats":
					return d.stats(&out.Stats)
				}
				return d.skip()
			})
		}
		return d.skip()
	})
	if err != nil {
		return nil, fmt.Errorf("decode prometheus response: %w", err)
	}
	if out.Status == "success" && !result {
		return nil, errors.New("decode prometheus response: no result")
	}
	return out, nil
}

// stats reads data.stats: timings.evalTotalTime and samples.totalQueryableSamples when they are
// numbers; anything else in it, of any shape, is skipped.
func (d *decoder) stats(out *QueryStats) error {
	if c, err := d.peek(); err != nil || c != '{' {
		return d.skip()
	}
	field := func(want string, set func([]byte)) func([]byte) error {
		return func(key []byte) error {
			if string(key) != want {
				return d.skip()
			}
			if c, err := d.peek(); err != nil || (c != '-' && (c < '0' || c > '9')) {
				return d.skip()
			}
			n, err := d.number()
			if err == nil {
				set(n)
			}
			return err
		}
	}
	return d.object(func(key []byte) error {
		var inner func([]byte) error
		switch string(key) {
		case "timings":
			inner = field("evalTotalTime", func(n []byte) { out.EvalSeconds, _ = strconv.ParseFloat(string(n), 64) })
		case "samples":
			inner = field("totalQueryableSamples", func(n []byte) { out.Samples, _ = strconv.ParseInt(string(n), 10, 64) })
		default:
			return d.skip()
		}
		if c, err := d.peek(); err != nil || c != '{' {
			return d.skip()
		}
		return d.object(inner)
	})
}

// result reads a vector ([{...}, ...]) or a scalar ([ts, "v"]); which one is told by the first byte.
func (d *decoder) result(out *apiResponse) error {
	if err := d.expect('['); err != nil {
		return err
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == ']' {
		_, err := d.r.ReadByte()
		return err
	}
	if c != '{' { // a scalar or a string: [ts, "v"]
		s := Sample{}
		if err := d.pairBody(&s); err != nil {
			return err
		}
		out.Samples = append(out.Samples, s)
		return nil
	}
	for {
		s, ok, err := d.sample()
		if err != nil {
			return err
		}
		if ok {
			out.Samples = append(out.Samples, s)
		}
		more, err := d.next(']')
		if err != nil || !more {
			return err
		}
	}
}

// sample reads {"metric": {...}, "value": [ts, "v"]}; ok is false for a sample without a float
// value (a native histogram, or a range vector's "values", which the caller refuses by resultType).
func (d *decoder) sample() (s Sample, ok bool, err error) {
	err = d.object(func(key []byte) error {
		switch string(key) {
		case "metric":
			if d.all {
				s.Labels = model.Metric{}
			}
			return d.object(func(name []byte) error {
				switch {
				case d.all:
					n := model.LabelName(name)
					v, err := d.str()
					s.Labels[n] = model.LabelValue(v)
					if string(n) == d.label {
						s.Object = v
					}
					return err
				case string(name) == d.label:
					v, err := d.str()
					s.Object = v
					return err
				}
				return d.skipString()
			})
		case "value":
			ok = true
			if err := d.expect('['); err != nil {
				return err
			}
			return d.pairBody(&s)
		}
		return d.skip()
	})
	return s, ok, err
}

// pairBody reads ts, "v"] (the opening bracket already read).
func (d *decoder) pairBody(s *Sample) error {
	num, err := d.number()
	if err != nil {
		return err
	}
	if s.Timestamp, err = parseTime(num); err != nil {
		return err
	}
	if err := d.expect(','); err != nil {
		return err
	}
	if err := d.expect('"'); err != nil {
		return err
	}
	if err := d.strBody(); err != nil {
		return err
	}
	if len(d.buf) == 0 {
		return errSyntax
	}
	// ParseFloat keeps no reference to its argument (an error copies it).
	if s.Value, err = strconv.ParseFloat(unsafe.String(&d.buf[0], len(d.buf)), 64); err != nil {
		return fmt.Errorf("sample value: %w", err)
	}
	return d.expect(']')
}

// parseTime parses seconds with up to millisecond decimals, as model.Time.UnmarshalJSON does.
func parseTime(b []byte) (model.Time, error) {
	neg := len(b) > 0 && b[0] == '-'
	if neg {
		b = b[1:]
	}
	var sec, frac int64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		sec = sec*10 + int64(b[i]-'0')
	}
	if i == 0 && (i >= len(b) || b[i] != '.') {
		return 0, fmt.Errorf("timestamp %q: %w", b, errSyntax)
	}
	digits := 0
	if i < len(b) && b[i] == '.' {
		for i++; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if digits < 3 {
				frac = frac*10 + int64(b[i]-'0')
				digits++
			}
		}
	}
	if i != len(b) {
		return 0, fmt.Errorf("timestamp %q: %w", b, errSyntax)
	}
	for ; digits < 3; digits++ {
		frac *= 10
	}
	t := sec*1000 + frac
	if neg {
		t = -t
	}
	return model.Time(t), nil
}

// --- the tokenizer ---

func (d *decoder) ws() (byte, error) {
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		}
		return c, nil
	}
}

func (d *decoder) peek() (byte, error) {
	c, err := d.ws()
	if err != nil {
		return 0, err
	}
	return c, d.r.UnreadByte()
}

func (d *decoder) expect(want byte) error {
	c, err := d.ws()
	if err != nil {
		return err
	}
	if c != want {
		return fmt.Errorf("%w: want %q, got %q", errSyntax, want, c)
	}
	return nil
}

// next reads a separator: true after ',', false after end.
func (d *decoder) next(end byte) (bool, error) {
	c, err := d.ws()
	if err != nil {
		return false, err
	}
	switch c {
	case ',':
		return true, nil
	case end:
		return false, nil
	}
	return false, fmt.Errorf("%w: want ',' or %q, got %q", errSyntax, end, c)
}

// object reads {"k": v, ...}, calling field with each key (valid until field returns) to read its value.
func (d *decoder) object(field func(key []byte) error) error {
	if err := d.expect('{'); err != nil {
		return err
	}
	c, err := d.peek()
	if err != nil {
		return err
	}
	if c == '}' {
		_, err := d.r.ReadByte()
		return err
	}
	for {
		if err := d.expect('"'); err != nil {
			return err
		}
		if err := d.strBody(); err != nil {
			return err
		}
		if err := d.expect(':'); err != nil {
			return err
		}
		if err := field(d.buf); err != nil { // the key is valid until field reads the value
			return err
		}
		more, err := d.next('}')
		if err != nil || !more {
			return err
		}
	}
}

// str reads a string value into a new string.
func (d *decoder) str() (string, error) {
	if err := d.expect('"'); err != nil {
		return "", err
	}
	if err := d.strBody(); err != nil {
		return "", err
	}
	return string(d.buf), nil
}

func (d *decoder) skipString() error {
	if err := d.expect('"'); err != nil {
		return err
	}
	return d.strBody()
}

// strBody reads the rest of a string (the opening quote already read) into d.buf, unescaped.
func (d *decoder) strBody() error {
	d.buf = d.buf[:0]
	for {
		// Copy the buffered run up to a quote or backslash in one step.
		chunk, err := d.r.Peek(max(d.r.Buffered(), 1))
		if len(chunk) == 0 {
			return unexpected(err)
		}
		i := 0
		for i < len(chunk) && chunk[i] != '"' && chunk[i] != '\\' {
			i++
		}
		d.buf = append(d.buf, chunk[:i]...)
		if i == len(chunk) {
			_, _ = d.r.Discard(i)
			continue
		}
		esc := chunk[i] == '\\'
		_, _ = d.r.Discard(i + 1)
		if !esc {
			return nil
		}
		if err := d.escape(); err != nil {
			return err
		}
	}
}

func (d *decoder) escape() error {
	c, err := d.r.ReadByte()
	if err != nil {
		return unexpected(err)
	}
	switch c {
	case '"', '\\', '/':
		d.buf = append(d.buf, c)
	case 'b':
		d.buf = append(d.buf, '\b')
	case 'f':
		d.buf = append(d.buf, '\f')
	case 'n':
		d.buf = append(d.buf, '\n')
	case 'r':
		d.buf = append(d.buf, '\r')
	case 't':
		d.buf = append(d.buf, '\t')
	case 'u':
		r, err := d.hex4()
		if err != nil {
			return err
		}
		if utf16.IsSurrogate(r) {
			// A pair \uD83D\uDE00; an unpaired half becomes U+FFFD, as encoding/json does.
			if b, _ := d.r.Peek(2); len(b) == 2 && b[0] == '\\' && b[1] == 'u' {
				_, _ = d.r.Discard(2)
				r2, err := d.hex4()
				if err != nil {
					return err
				}
				if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
					d.buf = utf8.AppendRune(d.buf, dec)
					return nil
				}
				d.buf = utf8.AppendRune(d.buf, utf8.RuneError)
				r = r2
				if !utf16.IsSurrogate(r) {
					d.buf = utf8.AppendRune(d.buf, r)
					return nil
				}
			}
			r = utf8.RuneError
		}
		d.buf = utf8.AppendRune(d.buf, r)
	default:
		return fmt.Errorf("%w: bad escape \\%c", errSyntax, c)
	}
	return nil
}

func (d *decoder) hex4() (rune, error) {
	var r rune
	for range 4 {
		c, err := d.r.ReadByte()
		if err != nil {
			return 0, unexpected(err)
		}
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, fmt.Errorf("%w: bad \\u escape", errSyntax)
		}
		r = r<<4 | rune(c)
	}
	return r, nil
}

// number reads a JSON number into d.buf (returned; valid until the next read).
func (d *decoder) number() ([]byte, error) {
	c, err := d.ws()
	if err != nil {
		return nil, err
	}
	d.buf = append(d.buf[:0], c)
	for {
		c, err := d.r.ReadByte()
		if err != nil {
			return nil, unexpected(err)
		}
		if c >= '0' && c <= '9' || c == '.' || c == '-' || c == '+' || c == 'e' || c == 'E' {
			d.buf = append(d.buf, c)
			continue
		}
		return d.buf, d.r.UnreadByte()
	}
}

// skip reads past any one value.
func (d *decoder) skip() error {
	c, err := d.peek()
	if err != nil {
		return err
	}
	switch c {
	case '"':
		return d.skipString()
	case '{':
		return d.object(func([]byte) error { return d.skip() })
	case '[':
		_, _ = d.r.ReadByte()
		if c, err := d.peek(); err != nil {
			return err
		} else if c == ']' {
			_, err := d.r.ReadByte()
			return err
		}
		for {
			if err := d.skip(); err != nil {
				return err
			}
			more, err := d.next(']')
			if err != nil || !more {
				return err
			}
		}
	case 't', 'f', 'n':
		for {
			c, err := d.r.ReadByte()
			if err != nil {
				return unexpected(err)
			}
			if c < 'a' || c > 'z' {
				return d.r.UnreadByte()
			}
		}
	}
	_, err = d.number()
	return err
}

func unexpected(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}
