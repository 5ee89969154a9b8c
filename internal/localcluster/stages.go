package localcluster

import (
	"fmt"
	"os"
	"strings"
)

// AnnotationReadyWhenListening on a pod (its value: the port) makes kwok start it Running but not Ready; the
// test harness (internal/podproc) marks it Ready once its process accepts connections on that port, as a
// kubelet with a TCP readiness probe would. Pods without it are made Ready by kwok at once, as before.
const AnnotationReadyWhenListening = "podproc.promql-adapter.io/ready-when-listening"

// readyWhenListeningStage starts an annotated pod: Running, with its IP, Ready false.
const readyWhenListeningStage = `---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: pod-start-ready-when-listening
spec:
  resourceRef:
    apiGroup: v1
    kind: Pod
  selector:
    matchExpressions:
    - key: '.metadata.deletionTimestamp'
      operator: 'DoesNotExist'
    - key: '.status.phase'
      operator: 'In'
      values:
      - 'Pending'
    - key: '.metadata.annotations["` + AnnotationReadyWhenListening + `"]'
      operator: 'Exists'
  next:
    statusTemplate: |
      {{ $now := Now }}

      conditions:
      - lastTransitionTime: {{ $now | Quote }}
        status: "True"
        type: Initialized
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: Ready
      - lastTransitionTime: {{ $now | Quote }}
        status: "False"
        type: ContainersReady

      containerStatuses:
      {{ range .spec.containers }}
      - image: {{ .image | Quote }}
        name: {{ .name | Quote }}
        ready: false
        restartCount: 0
        started: true
        state:
          running:
            startedAt: {{ $now | Quote }}
      {{ end }}
      {{ $hostIPs := NodeIPsWith .spec.nodeName }}
      {{ with $hostIPs }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ $podIPs := PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      {{ with $podIPs }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      phase: Running
      startTime: {{ $now | Quote }}
`

// writeStages writes kwok's stages from src into dst, with pods annotated AnnotationReadyWhenListening
// taken out of kwok's pod-ready stage and started by readyWhenListeningStage instead.
func writeStages(src, dst string) error {
	b, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("kwok stages: %w", err)
	}
	s := string(b)
	i := strings.Index(s, "\n  name: pod-ready\n")
	if i < 0 {
		return fmt.Errorf("kwok stages %s: no pod-ready stage", src)
	}
	const sel = "\n    matchExpressions:\n"
	j := strings.Index(s[i:], sel)
	if j < 0 {
		return fmt.Errorf("kwok stages %s: pod-ready has no matchExpressions", src)
	}
	at := i + j + len(sel)
	exclude := "    - key: '.metadata.annotations[\"" + AnnotationReadyWhenListening + "\"]'\n      operator: 'DoesNotExist'\n"
	s = s[:at] + exclude + s[at:] + "\n" + readyWhenListeningStage
	return os.WriteFile(dst, []byte(s), 0o600)
}
