package pavalues

// The keys of prometheus-adapter's Helm chart (prometheus-community/helm-charts,
// charts/prometheus-adapter 5.x) and their defaults, as its values.yaml documents them. A
// section is an object whose keys the chart names one by one; any other value, maps included,
// is a leaf taken whole (nodeSelector, resources, affinity...).

// section is an object of the PA chart whose keys are known.
type section map[string]any

// paKeys are the PA chart's values with their defaults.
var paKeys = section{
	"affinity":                  map[string]any{},
	"topologySpreadConstraints": []any{},
	"nameOverride":              "",
	"fullnameOverride":          "",
	"image": section{
		"repository":  "registry.k8s.io/prometheus-adapter/prometheus-adapter",
		"tag":         "",
		"pullPolicy":  "IfNotPresent",
		"pullSecrets": []any{},
	},
	"logLevel":              4,
	"metricsRelistInterval": "1m",
	"listenPort":            6443,
	"nodeSelector":          map[string]any{},
	"priorityClassName":     "",
	"namespaceOverride":     "",
	"customAnnotations":     map[string]any{},
	"customLabels":          map[string]any{},
	"prometheus": section{
		"url":  "http://prometheus.default.svc",
		"port": 9090,
		"path": "",
	},
	"replicas":           1,
	"podSecurityContext": map[string]any{"fsGroup": 10001},
	"securityContext": map[string]any{
		"allowPrivilegeEscalation": false,
		"capabilities":             map[string]any{"drop": []any{"ALL"}},
		"readOnlyRootFilesystem":   true,
		"runAsNonRoot":             true,
		"runAsUser":                10001,
		"seccompProfile":           map[string]any{"type": "RuntimeDefault"},
	},
	"rbac": section{
		"create":                   true,
		"useAuthReaderClusterRole": false,
		"externalMetrics":          section{"resources": []any{"*"}},
		"customMetrics":            section{"resources": []any{"*"}},
	},
	"automountServiceAccountToken": true,
	"serviceAccount": section{
		"create":                       true,
		"name":                         nil,
		"annotations":                  map[string]any{},
		"automountServiceAccountToken": true,
	},
	"dnsConfig":      map[string]any{},
	"resources":      map[string]any{},
	"livenessProbe":  paProbe,
	"readinessProbe": paProbe,
	"startupProbe":   map[string]any{},
	"rules": section{
		"default":  true,
		"custom":   []any{},
		"existing": nil,
		"external": []any{},
		"resource": nil,
	},
	"service": section{
		"annotations": map[string]any{},
		"port":        443,
		"type":        "ClusterIP",
		"clusterIP":   nil,
		"ipDualStack": section{
			"enabled":        false,
			"ipFamilies":     []any{"IPv6", "IPv4"},
			"ipFamilyPolicy": "PreferDualStack",
		},
	},
	"tls": section{
		"enable":      false,
		"ca":          "",
		"key":         "",
		"certificate": "",
	},
	"env":                   []any{},
	"extraArguments":        []any{},
	"extraContainers":       []any{},
	"extraVolumes":          []any{},
	"extraVolumeMounts":     []any{},
	"tolerations":           []any{},
	"podLabels":             map[string]any{},
	"podAnnotations":        map[string]any{},
	"deploymentAnnotations": map[string]any{},
	"hostNetwork":           section{"enabled": false},
	"dnsPolicy":             nil,
	"strategy": map[string]any{
		"type":          "RollingUpdate",
		"rollingUpdate": map[string]any{"maxUnavailable": "25%", "maxSurge": "25%"},
	},
	"podDisruptionBudget": section{
		"enabled":                    false,
		"minAvailable":               nil,
		"maxUnavailable":             1,
		"unhealthyPodEvictionPolicy": nil,
	},
	"certManager": section{
		"enabled":                    false,
		"caCertDuration":             "43800h0m0s",
		"certDuration":               "8760h0m0s",
		"caCertRevisionHistoryLimit": nil,
		"certRevisionHistoryLimit":   nil,
	},
	"extraManifests":       []any{},
	"revisionHistoryLimit": 10,
	// Helm's own key for values shared with subcharts.
	"global": map[string]any{},
}

// paProbe is the PA chart's liveness and readiness probe.
var paProbe = map[string]any{
	"httpGet":             map[string]any{"path": "/healthz", "port": "https", "scheme": "HTTPS"},
	"initialDelaySeconds": 30,
	"timeoutSeconds":      5,
}

// unmapped says why a PA key has no counterpart in promql-adapter's chart; the warning quotes it.
var unmapped = map[string]string{
	"namespaceOverride":                           "the chart installs into the release's namespace: use helm install --namespace",
	"rbac.useAuthReaderClusterRole":               "the chart binds the extension-apiserver-authentication-reader Role in kube-system",
	"rbac.externalMetrics.resources":              "the chart lets the HPA controller read every external metric",
	"rbac.customMetrics.resources":                "the chart lets the HPA controller read every custom metric",
	"automountServiceAccountToken":                "the adapter needs its token for delegated authentication and informers",
	"serviceAccount.automountServiceAccountToken": "the adapter needs its token for delegated authentication and informers",
	"dnsConfig":                                      "the chart has no dnsConfig",
	"dnsPolicy":                                      "the chart sets dnsPolicy ClusterFirstWithHostNet with hostNetwork, and keeps Kubernetes' default otherwise",
	"service.annotations":                            "the chart's Service has no annotations",
	"service.clusterIP":                              "the chart's Service gets its address from the cluster",
	"service.ipDualStack.enabled":                    "the chart's Service takes the cluster's IP family default",
	"service.ipDualStack.ipFamilies":                 "the chart's Service takes the cluster's IP family default",
	"service.ipDualStack.ipFamilyPolicy":             "the chart's Service takes the cluster's IP family default",
	"extraContainers":                                "the chart runs no sidecars",
	"deploymentAnnotations":                          "the chart's Deployment has no annotations of its own (podAnnotations are set)",
	"extraManifests":                                 "apply extra objects yourself, or from a chart of your own",
	"revisionHistoryLimit":                           "the chart keeps Kubernetes' default",
	"podDisruptionBudget.maxUnavailable":             "the chart's PodDisruptionBudget takes minAvailable only",
	"podDisruptionBudget.unhealthyPodEvictionPolicy": "the chart's PodDisruptionBudget has no unhealthyPodEvictionPolicy",
	"certManager.caCertDuration":                     "with cert-manager the chart's self-signed CA takes cert-manager's default duration",
	"certManager.caCertRevisionHistoryLimit":         "the chart's Certificates take cert-manager's default",
	"certManager.certRevisionHistoryLimit":           "the chart's Certificates take cert-manager's default",
	"global":                                         "the chart reads no global values",
	"certManager.certDuration":                       "used only with certManager.enabled",
	"tls.ca":                                         "used only with tls.enable",
	"tls.key":                                        "used only with tls.enable",
	"tls.certificate":                                "used only with tls.enable",
}
