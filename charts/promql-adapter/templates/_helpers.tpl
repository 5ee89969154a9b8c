{{/* The chart's name: nameOverride, else promql-adapter; the adapter's app.kubernetes.io/name label. */}}
{{- define "promql-adapter.name" -}}
{{- .Values.nameOverride | default .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's base name: fullnameOverride, else the release name when it contains the chart's name, else both. */}}
{{- define "promql-adapter.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := include "promql-adapter.name" . -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* promql-adapter.componentName: the name of component (wake, activator) beside the adapter: promql-adapter
in the base name becomes promql-<component>, and a base name without it gets -<component> appended. Dict root, component. */}}
{{- define "promql-adapter.componentName" -}}
{{- $f := include "promql-adapter.fullname" .root -}}
{{- if contains "promql-adapter" $f -}}
{{- $f | replace "promql-adapter" (printf "promql-%s" .component) | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" ($f | trunc (int (sub 62 (len .component)))) .component | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "promql-adapter.wakeName" -}}
{{- include "promql-adapter.componentName" (dict "root" . "component" "wake") -}}
{{- end -}}

{{- define "promql-adapter.activatorName" -}}
{{- include "promql-adapter.componentName" (dict "root" . "component" "activator") -}}
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
app.kubernetes.io/name: {{ include "promql-adapter.name" . }}
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
{{- with omit (.Values.commonLabels | default dict) "app.kubernetes.io/name" "app.kubernetes.io/instance" "app.kubernetes.io/version" "app.kubernetes.io/managed-by" "app.kubernetes.io/part-of" "helm.sh/chart" }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* promql-adapter.annotations: an object's annotations block (commonAnnotations, and its own in extra, which
win), or nothing. Dict root, extra. */}}
{{- define "promql-adapter.annotations" -}}
{{- $a := merge (dict) (.extra | default dict) (.root.Values.commonAnnotations | default dict) -}}
{{- with $a -}}
annotations:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/* promql-adapter.affinity: a pod's affinity: the raw affinity given, plus the chart's preferred (soft) or required
(hard) anti-affinity on the pods' node unless the raw one has a podAntiAffinity. Dict affinity, preset (soft, hard,
none), selector (the pods' selector labels, YAML). Empty when there is neither. */}}
{{- define "promql-adapter.affinity" -}}
{{- $aff := .affinity | default dict -}}
{{- $preset := and (ne .preset "none") (not $aff.podAntiAffinity) -}}
{{- if or $aff $preset -}}
affinity:
  {{- with $aff }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
  {{- if $preset }}
  podAntiAffinity:
    {{- if eq .preset "hard" }}
    requiredDuringSchedulingIgnoredDuringExecution:
    - topologyKey: kubernetes.io/hostname
      labelSelector:
        matchLabels:
          {{- .selector | nindent 10 }}
    {{- else }}
    preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- .selector | nindent 12 }}
    {{- end }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* promql-adapter.topologySpread: a pod's topologySpreadConstraints, each selecting the pods by their selector
labels unless it has a labelSelector of its own. Dict constraints, selector (YAML). */}}
{{- define "promql-adapter.topologySpread" -}}
{{- with .constraints -}}
topologySpreadConstraints:
{{- range . }}
- {{ toYaml . | nindent 2 | trim }}
  {{- if not .labelSelector }}
  labelSelector:
    matchLabels:
      {{- $.selector | nindent 6 }}
  {{- end }}
{{- end }}
{{- end -}}
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
  {{- $ann := dict }}
  {{- if eq $root.Values.tls.mode "certManager" }}
  {{- $_ := set $ann "cert-manager.io/inject-ca-from" (printf "%s/%s" $root.Release.Namespace $fullname) }}
  {{- end }}
  {{- with include "promql-adapter.annotations" (dict "root" $root "extra" $ann) }}
  {{- . | nindent 2 }}
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

{{/* promql-adapter.forwardUpstreams: every upstream of forward.external and forward.custom, as YAML {items: [{u, id,
path}]}: id names its volumes and directory (external-0, custom-1, ...), path its value in errors. */}}
{{- define "promql-adapter.forwardUpstreams" -}}
{{- $l := list -}}
{{- range $api := list "external" "custom" -}}
{{- range $i, $u := index $.Values.forward $api -}}
{{- $l = append $l (dict "u" $u "id" (printf "%s-%d" $api $i) "path" (printf "forward.%s[%d]" $api $i)) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $l) -}}
{{- end -}}

{{/* promql-adapter.forwardSpec: one upstream as the value of --forward-external or --forward-custom
(URL,key=value,...); the Secrets it names are mounted under /etc/promql-adapter/forward/<id>. Dict u, id, path. */}}
{{- define "promql-adapter.forwardSpec" -}}
{{- $u := .u -}}
{{- $dir := printf "/etc/promql-adapter/forward/%s" .id -}}
{{- $caSecret := dig "caSecret" "name" "" $u -}}
{{- $tokenSecret := dig "tokenSecret" "name" "" $u -}}
{{- $certSecret := dig "certSecret" "name" "" $u -}}
{{- if gt (len (compact (list $caSecret ($u.caFile | default "") (ternary "clusterCA" "" (eq (toString $u.clusterCA) "true"))))) 1 -}}
{{- fail (printf "%s: give one of caSecret, caFile and clusterCA" .path) -}}
{{- end -}}
{{- if and $tokenSecret $certSecret -}}
{{- fail (printf "%s: give tokenSecret or certSecret, not both" .path) -}}
{{- end -}}
{{- $p := list $u.url -}}
{{- with $u.name }}{{ $p = append $p (printf "name=%s" .) }}{{ end -}}
{{- if $caSecret }}{{ $p = append $p (printf "ca-file=%s/ca/%s" $dir (dig "caSecret" "key" "ca.crt" $u)) }}{{ end -}}
{{- with $u.caFile }}{{ $p = append $p (printf "ca-file=%s" .) }}{{ end -}}
{{- if $u.clusterCA }}{{ $p = append $p "cluster-ca" }}{{ end -}}
{{- with $u.serverName }}{{ $p = append $p (printf "server-name=%s" .) }}{{ end -}}
{{- if $u.insecureSkipTLSVerify }}{{ $p = append $p "insecure-skip-tls-verify" }}{{ end -}}
{{- if $u.catchAll }}{{ $p = append $p "catch-all" }}{{ end -}}
{{- with $u.auth }}{{ $p = append $p (printf "auth=%s" .) }}{{ end -}}
{{- if $tokenSecret }}{{ $p = append $p (printf "token-file=%s/token/%s" $dir (dig "tokenSecret" "key" "token" $u)) }}{{ end -}}
{{- if $certSecret }}{{ $p = append $p (printf "cert-file=%s/cert/tls.crt" $dir) (printf "key-file=%s/cert/tls.key" $dir) }}{{ end -}}
{{- with $u.identity }}{{ $p = append $p (printf "identity=%s" .) }}{{ end -}}
{{- join "," $p -}}
{{- end -}}

{{/* promql-adapter.forwardSecrets: the Secrets the upstreams name, as YAML {items: [{volume, secret, dir}]}. */}}
{{- define "promql-adapter.forwardSecrets" -}}
{{- $l := list -}}
{{- range $up := (include "promql-adapter.forwardUpstreams" . | fromYaml).items -}}
{{- range $kind := list "ca" "token" "cert" -}}
{{- with dig (printf "%sSecret" $kind) "name" "" $up.u -}}
{{- $l = append $l (dict "volume" (printf "forward-%s-%s" $up.id $kind) "secret" . "dir" (printf "/etc/promql-adapter/forward/%s/%s" $up.id $kind)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "items" $l) -}}
{{- end -}}

{{- define "promql-adapter.forwardMounts" -}}
{{- range (include "promql-adapter.forwardSecrets" . | fromYaml).items }}
- {name: {{ .volume }}, mountPath: {{ .dir }}, readOnly: true}
{{- end }}
{{- end -}}

{{- define "promql-adapter.forwardVolumes" -}}
{{- range (include "promql-adapter.forwardSecrets" . | fromYaml).items }}
- name: {{ .volume }}
  secret: {secretName: {{ .secret }}}
{{- end }}
{{- end -}}
