#!/usr/bin/env bash
# Makes a CA and the adapter's serving certificate, stores them as the Secret
# custom-metrics/promql-adapter-tls, and writes the CA into the three APIServices.
# Usage: deploy/certs.sh [dir]   (needs openssl and kubectl pointed at the cluster)
# With cert-manager, use a Certificate for promql-adapter.custom-metrics.svc and its
# cainjector annotation on the APIServices instead.
set -euo pipefail
dir=${1:-$(mktemp -d)}
svc=promql-adapter.custom-metrics.svc
cd "$dir"
openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -keyout ca.key -out ca.crt -subj "/CN=promql-adapter-ca" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout tls.key -out tls.csr -subj "/CN=$svc" 2>/dev/null
printf 'subjectAltName=DNS:%s,DNS:%s.cluster.local\nextendedKeyUsage=serverAuth\n' "$svc" "$svc" > ext.cnf
openssl x509 -req -in tls.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out tls.crt -extfile ext.cnf 2>/dev/null
kubectl -n custom-metrics create secret tls promql-adapter-tls --cert=tls.crt --key=tls.key --dry-run=client -o yaml | kubectl apply -f -
ca=$(base64 -w0 ca.crt)
for a in v1beta2.custom.metrics.k8s.io v1beta1.custom.metrics.k8s.io v1beta1.external.metrics.k8s.io; do
  kubectl patch apiservice "$a" --type=merge -p "{\"spec\":{\"caBundle\":\"$ca\"}}"
done
echo "certificates in $dir"
