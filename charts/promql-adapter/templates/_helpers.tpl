{{/* The release's base name: the release name when it contains the chart's name, else both. */}}
{{- define "promql-adapter.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "promql-adapter.wakeName" -}}
{{- printf "%s" (include "promql-adapter.fullname" . | replace "promql-adapter" "promql-wake") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "promql-adapter.activatorName" -}}
{{- printf "%s" (include "promql-adapter.fullname" . | replace "promql-adapter" "promql-activator") | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The rules a wake needs: /scale of the targets, and promql-wake's sleeping state on the HPA. */}}
{{- define "promql-adapter.activatorWakeRules" }}
# A held request wakes its target through the scale subresource (optimistic concurrency).
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  verbs: [get, update]
# A wake clears promql-wake's sleeping state on the HPA (a merge patch of its annotations).
- apiGroups: [autoscaling]
  resources: [horizontalpodautoscalers]
  verbs: [patch]
{{- end }}

{{- define "promql-adapter.activatorSelectorLabels" -}}
app.kubernetes.io/name: promql-activator
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "promql-adapter.activatorLabels" -}}
{{ include "promql-adapter.activatorSelectorLabels" . }}
{{ include "promql-adapter.commonLabels" . }}
{{- end -}}

{{- define "promql-adapter.selectorLabels" -}}
app.kubernetes.io/name: promql-adapter
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "promql-adapter.wakeSelectorLabels" -}}
app.kubernetes.io/name: promql-wake
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "promql-adapter.commonLabels" -}}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: promql-adapter
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "promql-adapter.labels" -}}
{{ include "promql-adapter.selectorLabels" . }}
{{ include "promql-adapter.commonLabels" . }}
{{- end -}}

{{- define "promql-adapter.wakeLabels" -}}
{{ include "promql-adapter.wakeSelectorLabels" . }}
{{ include "promql-adapter.commonLabels" . }}
{{- end -}}

{{- define "promql-adapter.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default (printf "v%s" .Chart.AppVersion)) -}}
{{- end -}}
{{- end -}}

{{- define "promql-adapter.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- .Values.serviceAccount.name | default (include "promql-adapter.fullname" .) -}}
{{- else -}}
{{- .Values.serviceAccount.name | default "default" -}}
{{- end -}}
{{- end -}}

{{- define "promql-adapter.rulesConfigMap" -}}
{{- .Values.rules.existingConfigMap | default (printf "%s-rules" (include "promql-adapter.fullname" .)) -}}
{{- end -}}

{{- define "promql-adapter.tlsSecretName" -}}
{{- .Values.tls.secretName | default (printf "%s-tls" (include "promql-adapter.fullname" .)) -}}
{{- end -}}

{{/* The generated CA's key (tls.mode generate), in a Secret no pod mounts. */}}
{{- define "promql-adapter.caKeySecretName" -}}
{{- printf "%s-ca-key" (include "promql-adapter.fullname" .) -}}
{{- end -}}

{{- define "promql-adapter.wakeTLSSecretName" -}}
{{- .Values.wake.tlsSecretName | default (printf "%s-tls" (include "promql-adapter.wakeName" .)) -}}
{{- end -}}

{{- define "promql-adapter.wakeTokenSecretName" -}}
{{- .Values.wake.token.existingSecret | default (printf "%s-token" (include "promql-adapter.wakeName" .)) -}}
{{- end -}}

{{/*
promql-adapter.certs: the generated CA and certificates (tls.mode generate), made once per render and
kept across upgrades: the existing Secrets' are reused (the CA key from its own Secret, or from the
serving Secret as older versions of the chart kept it). Returns a dict as YAML: ca, caKey, cert, key,
wakeCert, wakeKey (PEM).
*/}}
{{- define "promql-adapter.certs" -}}
{{- if not (hasKey .Values "__certs") -}}
{{- $fullname := include "promql-adapter.fullname" . -}}
{{- $ns := .Release.Namespace -}}
{{- $existing := dict -}}
{{- if ne .Values.tls.mode "controller" -}}{{/* controller: the adapter's CA stays the adapter's; promql-wake gets a CA of its own */}}
{{- $existing = lookup "v1" "Secret" $ns (include "promql-adapter.tlsSecretName" .) -}}
{{- end -}}
{{- $existingWake := lookup "v1" "Secret" $ns (include "promql-adapter.wakeTLSSecretName" .) -}}
{{- $existingCA := lookup "v1" "Secret" $ns (include "promql-adapter.caKeySecretName" .) -}}
{{- $tls := $existing.data | default dict -}}
{{- $caData := $existingCA.data | default dict -}}
{{- if not (index $caData "ca.key") -}}
{{- $caData = $tls -}}{{/* before the CA key had its own Secret, it was in the serving Secret */}}
{{- end -}}
{{- $out := dict -}}
{{- if and (index $caData "ca.crt") (index $caData "ca.key") (index $tls "tls.crt") (index $tls "tls.key") -}}
{{- $_ := set $out "ca" (index $caData "ca.crt" | b64dec) -}}
{{- $_ := set $out "caKey" (index $caData "ca.key" | b64dec) -}}
{{- $_ := set $out "cert" (index $tls "tls.crt" | b64dec) -}}
{{- $_ := set $out "key" (index $tls "tls.key" | b64dec) -}}
{{- else -}}
{{- $ca := genCA (printf "%s-ca" $fullname) (int .Values.tls.validityDays) -}}
{{- $svc := printf "%s.%s.svc" $fullname $ns -}}
{{- $cert := genSignedCert $svc nil (list $fullname (printf "%s.%s" $fullname $ns) $svc (printf "%s.cluster.local" $svc)) (int .Values.tls.validityDays) $ca -}}
{{- $_ := set $out "ca" $ca.Cert -}}
{{- $_ := set $out "caKey" $ca.Key -}}
{{- $_ := set $out "cert" $cert.Cert -}}
{{- $_ := set $out "key" $cert.Key -}}
{{- end -}}
{{- if and $existingWake (index ($existingWake.data | default dict) "tls.crt") -}}
{{- $_ := set $out "wakeCert" (index $existingWake.data "tls.crt" | b64dec) -}}
{{- $_ := set $out "wakeKey" (index $existingWake.data "tls.key" | b64dec) -}}
{{- else -}}
{{- $ca := buildCustomCert ($out.ca | b64enc) ($out.caKey | b64enc) -}}
{{- $wake := include "promql-adapter.wakeName" . -}}
{{- $wsvc := printf "%s.%s.svc" $wake $ns -}}
{{- $wcert := genSignedCert $wsvc nil (list $wake (printf "%s.%s" $wake $ns) $wsvc (printf "%s.cluster.local" $wsvc)) (int .Values.tls.validityDays) $ca -}}
{{- $_ := set $out "wakeCert" $wcert.Cert -}}
{{- $_ := set $out "wakeKey" $wcert.Key -}}
{{- end -}}
{{- $_ := set .Values "__certs" $out -}}
{{- end -}}
{{- toYaml (index .Values "__certs") -}}
{{- end -}}

{{/* promql-adapter.caBundle: the base64 CA the APIServices carry (empty with cert-manager: it injects it). */}}
{{- define "promql-adapter.caBundle" -}}
{{- if eq .Values.tls.mode "generate" -}}
{{- (include "promql-adapter.certs" . | fromYaml).ca | b64enc -}}
{{- else if eq .Values.tls.mode "secret" -}}
{{- .Values.tls.caBundle -}}
{{- end -}}
{{- end -}}

{{/* The APIs served: a list of {group, version, priority}. */}}
{{- define "promql-adapter.apiServices" -}}
{{- $l := list -}}
{{- if .Values.apis.custom -}}
{{- $l = append $l (dict "group" "custom.metrics.k8s.io" "version" "v1beta2" "versionPriority" 200) -}}
{{- $l = append $l (dict "group" "custom.metrics.k8s.io" "version" "v1beta1" "versionPriority" 100) -}}
{{- end -}}
{{- if .Values.apis.external -}}
{{- $l = append $l (dict "group" "external.metrics.k8s.io" "version" "v1beta1" "versionPriority" 100) -}}
{{- end -}}
{{- if .Values.apis.resource -}}
{{- range .Values.apis.resourceVersions -}}
{{- $l = append $l (dict "group" "metrics.k8s.io" "version" . "versionPriority" (ternary 200 100 (eq . "v1"))) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $l) -}}
{{- end -}}

{{/* promql-adapter.templatedAPIServices: the APIServices this chart templates, as {items: [...]}: those of
apis.* less apiService.ownedElsewhere (another release templates them; the controller claims them). */}}
{{- define "promql-adapter.templatedAPIServices" -}}
{{- $l := list -}}
{{- range (include "promql-adapter.apiServices" . | fromYaml).items -}}
{{- if not (has (printf "%s.%s" .version .group) $.Values.apiService.ownedElsewhere) -}}
{{- $l = append $l . -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $l) -}}
{{- end -}}

{{/* promql-adapter.claimedNames: the names of the APIServices the controller claims (all of apis.*), one a line. */}}
{{- define "promql-adapter.claimedNames" -}}
{{- range (include "promql-adapter.apiServices" . | fromYaml).items }}
{{ printf "%s.%s" .version .group }}
{{- end -}}
{{- end -}}

{{/* promql-adapter.controller: "true" when the adapter runs the APIService controller. */}}
{{- define "promql-adapter.controller" -}}
{{- if or .Values.apiService.controller (eq .Values.tls.mode "controller") .Values.apiService.ownedElsewhere -}}
{{- if not .Values.apiService.controller -}}
{{- fail "tls.mode controller and apiService.ownedElsewhere need apiService.controller: true (the adapter writes the caBundle and claims the APIServices)" -}}
{{- end -}}
true
{{- end -}}
{{- end -}}

{{/* The --apis flag: only when the set differs from the adapter's default (custom, external). */}}
{{- define "promql-adapter.apisFlag" -}}
{{- $a := list -}}
{{- if .Values.apis.custom }}{{ $a = append $a "custom" }}{{ end -}}
{{- if .Values.apis.external }}{{ $a = append $a "external" }}{{ end -}}
{{- if .Values.apis.resource }}{{ $a = append $a "resource" }}{{ end -}}
{{- if ne (join "," $a) "custom,external" -}}
--apis={{ join "," $a }}
{{- end -}}
{{- end -}}

{{/* promql-adapter.apiService: one APIService; dict root (the chart's context) and api ({group, version, versionPriority}). */}}
{{- define "promql-adapter.apiService" -}}
{{- $root := .root -}}
{{- $fullname := include "promql-adapter.fullname" $root -}}
apiVersion: apiregistration.k8s.io/v1
kind: APIService
metadata:
  name: {{ .api.version }}.{{ .api.group }}
  labels:
    {{- include "promql-adapter.labels" $root | nindent 4 }}
  {{- if eq $root.Values.tls.mode "certManager" }}
  annotations:
    cert-manager.io/inject-ca-from: {{ $root.Release.Namespace }}/{{ $fullname }}
  {{- end }}
spec:
  group: {{ .api.group }}
  version: {{ .api.version }}
  service: {name: {{ $fullname }}, namespace: {{ $root.Release.Namespace }}, port: {{ $root.Values.service.port }}}
  groupPriorityMinimum: {{ $root.Values.apiService.groupPriorityMinimum }}
  versionPriority: {{ .api.versionPriority }}
  {{- if $root.Values.apiService.insecureSkipTLSVerify }}
  insecureSkipTLSVerify: true
  {{- else if not (has $root.Values.tls.mode (list "certManager" "controller")) }}
  caBundle: {{ include "promql-adapter.caBundle" $root | quote }}
  {{- end }}
{{- end -}}

{{/* promql-adapter.exampleRules: the rule file when rules.config is empty. */}}
{{- define "promql-adapter.exampleRules" -}}
metrics:
- name: elu_utilization
  resource: pods
  query: avg by (namespace, pod) (avg_over_time(elu_utilization[1m]))
- name: http_requests_per_second
  resource: pods
  query: sum by (namespace, pod) (rate(http_requests_total[2m]))
- name: service_requests_per_second
  resource: services
  query: sum by (namespace, service) (rate(http_requests_total[2m]))
- name: queue_messages_ready
  resource: external
  query: sum by (queue) (queue_messages_ready)
{{- end -}}

{{/* promql-adapter.rulesFile: the rule file the ConfigMap holds, as YAML: rules.config, else the example rules.
Helm merges a user's map into the default one, so the default is empty and the examples live here. */}}
{{- define "promql-adapter.rulesFile" -}}
{{- if .Values.rules.config -}}
{{- toYaml .Values.rules.config -}}
{{- else -}}
{{- include "promql-adapter.exampleRules" . -}}
{{- end -}}
{{- end -}}
