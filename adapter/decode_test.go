package adapter

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/common/model"
)

// clientDecode decodes a /api/v1/query answer the way the Prometheus client does (encoding/json
// into prometheus/common/model), the reference the streaming decoder must equal.
func clientDecode(t testing.TB, body []byte) (model.Vector, error) {
	t.Helper()
	var env struct {
		Status string `json:"status"`
		Data   struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &env); err != nil {
		return nil, err
	}
	switch env.Data.ResultType {
	case "vector":
		var v model.Vector
		err := json.Unmarshal(env.Data.Result, &v)
		return v, err
	case "scalar":
		var s model.Scalar
		err := json.Unmarshal(env.Data.Result, &s)
		return model.Vector{{Metric: model.Metric{}, Value: s.Value, Timestamp: s.Timestamp}}, err
	}
	return nil, fmt.Errorf("result type %q", env.Data.ResultType)
}

func sameValue(a, b float64) bool {
	return math.Float64bits(a) == math.Float64bits(b) || math.IsNaN(a) && math.IsNaN(b)
}

func TestDecodeEqualsClient(t *testing.T) {
	bodies := map[string]string{
		"vector": `{"status":"success","data":{"resultType":"vector","result":[` +
			`{"metric":{"__name__":"up","namespace":"shop","pod":"web-1"},"value":[1700000000.123,"0.25"]},` +
			`{"metric":{"pod":"web-2","namespace":"shop"},"value":[1700000000,"NaN"]},` +
			`{"metric":{"pod":"web-3"},"value":[1700000000.5,"+Inf"]},` +
			`{"metric":{"pod":"web-4"},"value":[1700000000.05,"-Inf"]},` +
			`{"metric":{"pod":"web-5"},"value":[1700000000.001,"1e-300"]},` +
			`{"metric":{"pod":"web-6"},"value":[-0.5,"123456789012345678901234567890"]},` +
			`{"metric":{},"value":[1700000000.9999,"0.1"]}]}}`,
		"escapes and unicode": `{"status":"success","data":{"resultType":"vector","result":[` +
			`{"metric":{"pod":"a\"b\\c\/d\n\t\u00e9\u003c\ud83d\ude00","x":"\ud800"},"value":[1,"2"]},` +
			`{"metric":{"pod":"日本"},"value":[1,"3"]}]}}`,
		"whitespace, extra keys, other order": "{ \"data\" : { \"result\" : [ { \"value\" : [ 1700000000.1 , \"7\" ] , \"metric\" : { \"pod\" : \"p\" } , \"extra\" : [ true , null , { \"k\" : [ ] } ] } ] ,\n \"resultType\" : \"vector\" } , \"status\" : \"success\" , \"warnings\" : [ \"w\" ] }",
		"empty":                               `{"status":"success","data":{"resultType":"vector","result":[]}}`,
		"scalar":                              `{"status":"success","data":{"resultType":"scalar","result":[1700000000.25,"42"]}}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			want, err := clientDecode(t, []byte(body))
			if err != nil {
				t.Fatal(err)
			}
			for _, all := range []bool{false, true} {
				r, err := decodeQuery(strings.NewReader(body), "pod", all)
				if err != nil {
					t.Fatalf("all=%v: %v", all, err)
				}
				if r.Status != "success" || len(r.Samples) != len(want) {
					t.Fatalf("all=%v: status %q, %d samples, want %d", all, r.Status, len(r.Samples), len(want))
				}
				for i, s := range r.Samples {
					w := want[i]
					if s.Object != string(w.Metric["pod"]) || !sameValue(s.Value, float64(w.Value)) || s.Timestamp != w.Timestamp {
						t.Errorf("all=%v sample %d: got %q %v %v, want %q %v %v", all, i, s.Object, s.Value, s.Timestamp, w.Metric["pod"], w.Value, w.Timestamp)
					}
					if all && r.ResultType == "vector" && !s.Labels.Equal(w.Metric) {
						t.Errorf("labels %v, want %v", s.Labels, w.Metric)
					}
					if !all && s.Labels != nil {
						t.Errorf("labels decoded though only pod was asked for: %v", s.Labels)
					}
				}
			}
		})
	}
}

func TestDecodeErrors(t *testing.T) {
	r, err := decodeQuery(strings.NewReader(`{"status":"error","errorType":"bad_data","error":"parse error: \"x\""}`), "pod", false)
	if err != nil || r.Status != "error" || r.ErrorType != "bad_data" || r.Error != `parse error: "x"` {
		t.Fatalf("error envelope: %+v %v", r, err)
	}
	for _, body := range []string{
		``, `{`, `{"status":"success"}`, `{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,2]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,"x"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[1,"1"]}]`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a\q"},"value":[1,"1"]}]}}`,
		`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a"},"value":[x,"1"]}]}}`,
	} {
		if r, err := decodeQuery(strings.NewReader(body), "pod", false); err == nil {
			t.Errorf("%q: no error (%+v)", body, r)
		}
	}
}

// FuzzDecode: any input decodes or fails without panicking, and whatever encoding/json reads as a
// vector decodes to the same objects, values and timestamps.
func FuzzDecode(f *testing.F) {
	f.Add(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"a\u00e9"},"value":[1700000000.123,"0.25"]}]}}`)
	f.Add(`{"status":"success","data":{"resultType":"scalar","result":[1,"NaN"]}}`)
	f.Add(`{"status":"error","errorType":"timeout","error":"x"}`)
	f.Add(`{"status":"success","data":{"resultType":"vector","result":[{"metric":{"pod":"b"},"value":[1,"2"]}],"stats":{"timings":{"evalTotalTime":0.5},"samples":{"totalQueryableSamples":3}}}}`)
	f.Add(`{"status":"success","data":{"stats":{"seriesFetched":"1","timings":[]},"resultType":"vector","result":[]}}`)
	f.Fuzz(func(t *testing.T, body string) {
		r, err := decodeQuery(strings.NewReader(body), "pod", false)
		want, werr := clientDecode(t, []byte(body))
		if err != nil || werr != nil || r.Status != "success" || !json.Valid([]byte(body)) || caseVariantKeys(body) {
			return
		}
		if len(r.Samples) != len(want) {
			return // a sample without a float value is dropped, encoding/json keeps it empty
		}
		for i, s := range r.Samples {
			if s.Object != string(want[i].Metric["pod"]) || !sameValue(s.Value, float64(want[i].Value)) {
				t.Fatalf("sample %d: %q %v, encoding/json: %q %v", i, s.Object, s.Value, want[i].Metric["pod"], want[i].Value)
			}
		}
	})
}

// caseVariantKeys reports whether body spells a key of the answer in other letter case ("metriC"):
// encoding/json matches such keys to the fields, Prometheus never sends them, and the decoder
// reads the keys exactly as Prometheus writes them.
func caseVariantKeys(body string) bool {
	lower := strings.ToLower(body)
	for _, k := range []string{"status", "data", "resultType", "result", "metric", "value", "values"} {
		if strings.Count(lower, `"`+strings.ToLower(k)+`"`) != strings.Count(body, `"`+k+`"`) {
			return true
		}
	}
	return false
}

// vectorBody is Prometheus's answer for n pods with the labels a typical pods rule keeps.
func vectorBody(n int) []byte {
	var b bytes.Buffer
	b.WriteString(`{"status":"success","data":{"resultType":"vector","result":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"metric":{"container":"app","instance":"10.0.0.1:8080","job":"web","namespace":"shop","pod":"web-%04d-7d9f8b6c5d-x%04d"},"value":[1700000000.123,"%g"]}`, i, i, float64(i%100)/100)
	}
	b.WriteString(`]}}`)
	return b.Bytes()
}

// BenchmarkDecode compares the streaming decoder (one label; every label) with the Prometheus
// client's decoding into model.Vector, for a 1,000-sample answer.
func BenchmarkDecode(b *testing.B) {
	body := vectorBody(1000)
	b.Run("stream-object-label", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			r, err := decodeQuery(bytes.NewReader(body), "pod", false)
			if err != nil || len(r.Samples) != 1000 {
				b.Fatal(err)
			}
		}
	})
	b.Run("stream-all-labels", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := decodeQuery(bytes.NewReader(body), "pod", true); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("client-model-vector", func(b *testing.B) {
		b.ReportAllocs()
		b.SetBytes(int64(len(body)))
		for b.Loop() {
			if _, err := clientDecode(b, body); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkFilter is the cost of keeping the selected objects' samples of a namespace-wide answer.
func BenchmarkFilter(b *testing.B) {
	r, err := decodeQuery(bytes.NewReader(vectorBody(1000)), "pod", false)
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []int{10, 1000} {
		allowed := make([]string, 0, n)
		for i := range n {
			allowed = append(allowed, r.Samples[i*(1000/n)].Object)
		}
		b.Run(fmt.Sprintf("keep-%d-of-1000", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if got := filterSamples(r.Samples, allowed); len(got) != n {
					b.Fatalf("%d kept", len(got))
				}
			}
		})
	}
}

// With Compression the client asks for gzip and reads the compressed answer; without, it does not ask.
func TestQueryCompression(t *testing.T) {
	body := vectorBody(3)
	for _, gz := range []bool{false, true} {
		var asked string
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			asked = r.Header.Get("Accept-Encoding")
			if asked == "gzip" {
				w.Header().Set("Content-Encoding", "gzip")
				zw := gzip.NewWriter(w)
				_, _ = zw.Write(body)
				_ = zw.Close()
				return
			}
			_, _ = w.Write(body)
		}))
		c, err := NewPromClient(PrometheusConfig{URL: srv.URL, Compression: gz}, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.QueryLabel(context.Background(), "x", "pod")
		srv.Close()
		if err != nil || len(got) != 3 || got[2].Object != "web-0002-7d9f8b6c5d-x0002" || got[2].Value != 0.02 {
			t.Fatalf("gzip=%v: %v %v", gz, got, err)
		}
		if (asked == "gzip") != gz {
			t.Errorf("gzip=%v: Accept-Encoding %q", gz, asked)
		}
	}
}
