#!/usr/bin/env bash
# Serving certificate for the injector without cert-manager: a private CA and a certificate for
# the webhook Service's DNS names, signed by it (ECDSA P-256). The API server trusts the CA through
# the MutatingWebhookConfiguration's caBundle.
#
#   deploy/injector/gen-certs.sh [--namespace NS] [--service NAME] [--secret NAME]
#                                [--webhook-config NAME] [--days N] [--out DIR] [--apply]
#
# Without --apply it only writes DIR/ca.crt, DIR/ca.key, DIR/tls.crt, DIR/tls.key and prints the
# two kubectl commands; with --apply it runs them: the TLS Secret the injector mounts, and the
# caBundle of every webhook of the MutatingWebhookConfiguration.
# The certificate expires after --days (default 365): run the script again before then (the
# injector picks up the renewed Secret by itself). cert-manager renews automatically: prefer it.
set -euo pipefail

namespace=llm-failover-system
service=llm-failover-injector
secret=llm-failover-injector-tls
webhook_config=llm-failover-injector
days=365
out=""
apply=false

while [[ $# -gt 0 ]]; do
  case "$1" in
    --namespace) namespace="$2"; shift 2 ;;
    --service) service="$2"; shift 2 ;;
    --secret) secret="$2"; shift 2 ;;
    --webhook-config) webhook_config="$2"; shift 2 ;;
    --days) days="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --apply) apply=true; shift ;;
    -h|--help) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument: $1 (try --help)" >&2; exit 2 ;;
  esac
done

command -v openssl >/dev/null || { echo "openssl is required" >&2; exit 1; }
if [[ -z "$out" ]]; then out="$(mktemp -d)"; fi
mkdir -p "$out"
umask 077

dns1="${service}.${namespace}.svc"
dns2="${dns1}.cluster.local"

openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$out/ca.key" -out "$out/ca.crt" -days "$((days + 1))" \
  -subj "/CN=${service}-ca" \
  -addext "basicConstraints=critical,CA:TRUE" \
  -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
  -keyout "$out/tls.key" -out "$out/tls.csr" -subj "/CN=${dns1}" 2>/dev/null

ext="$out/tls.ext"
cat >"$ext" <<EOF
basicConstraints=critical,CA:FALSE
keyUsage=critical,digitalSignature
extendedKeyUsage=serverAuth
subjectAltName=DNS:${dns1},DNS:${dns2}
EOF
openssl x509 -req -in "$out/tls.csr" -CA "$out/ca.crt" -CAkey "$out/ca.key" -CAcreateserial \
  -out "$out/tls.crt" -days "$days" -sha256 -extfile "$ext" 2>/dev/null
rm -f "$out/tls.csr" "$ext" "$out/ca.srl"
chmod 600 "$out/ca.key" "$out/tls.key"
chmod 644 "$out/ca.crt" "$out/tls.crt"

ca_bundle="$(base64 <"$out/ca.crt" | tr -d '\n')"
secret_cmd="kubectl -n ${namespace} create secret tls ${secret} --cert=${out}/tls.crt --key=${out}/tls.key --dry-run=client -o yaml | kubectl apply -f -"

echo "wrote ${out}/{ca.crt,ca.key,tls.crt,tls.key} for ${dns1} (valid ${days} days)"
if [[ "$apply" == true ]]; then
  command -v kubectl >/dev/null || { echo "kubectl is required for --apply" >&2; exit 1; }
  eval "$secret_cmd"
  count="$(kubectl get mutatingwebhookconfiguration "$webhook_config" -o jsonpath='{range .webhooks[*]}x{end}')"
  patch="["
  for ((i = 0; i < ${#count}; i++)); do
    [[ $i -gt 0 ]] && patch+=","
    patch+="{\"op\":\"add\",\"path\":\"/webhooks/${i}/clientConfig/caBundle\",\"value\":\"${ca_bundle}\"}"
  done
  patch+="]"
  kubectl patch mutatingwebhookconfiguration "$webhook_config" --type=json -p "$patch"
  echo "applied: Secret ${namespace}/${secret} and the caBundle of ${webhook_config}; keep ${out}/ca.key safe or delete it"
else
  echo "to install them (or run again with --apply):"
  echo "  ${secret_cmd}"
  echo "  kubectl patch mutatingwebhookconfiguration ${webhook_config} --type=json -p '[{\"op\":\"add\",\"path\":\"/webhooks/0/clientConfig/caBundle\",\"value\":\"'\"\$(base64 <${out}/ca.crt | tr -d '\\n')\"'\"},{\"op\":\"add\",\"path\":\"/webhooks/1/clientConfig/caBundle\",\"value\":\"'\"\$(base64 <${out}/ca.crt | tr -d '\\n')\"'\"}]'"
fi
