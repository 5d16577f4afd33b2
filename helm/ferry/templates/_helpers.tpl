{{/* Chart name, truncated to the 63 characters of a DNS label. */}}
{{- define "ferry.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Full name: release-chart, unless the release already contains the chart name. */}}
{{- define "ferry.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ferry.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ferry.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ferry.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ferry.labels" -}}
helm.sh/chart: {{ include "ferry.chart" . }}
{{ include "ferry.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: ferry
{{- end -}}

{{- define "ferry.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ferry.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ferry.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ferry.secretName" -}}
{{- default (include "ferry.fullname" .) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "ferry.hasScyllaPassword" -}}
{{- if or .Values.secrets.scyllaPassword (and .Values.secrets.existingSecret .Values.secrets.existingSecretHasScyllaPassword) -}}true{{- end -}}
{{- end -}}

{{/* Seconds: preStop sleep + ferry's drain + margin, or the configured value (checked). */}}
{{- define "ferry.terminationGracePeriod" -}}
{{- $grace := int (default 20 (dig "session" "shutdown_grace_secs" 20 .Values.config)) -}}
{{- $pre := int .Values.preStopSleepSeconds -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- add $pre $grace 10 -}}
{{- else -}}
{{- $t := int .Values.terminationGracePeriodSeconds -}}
{{- if le $t (add $pre $grace) -}}
{{- fail (printf "terminationGracePeriodSeconds (%d) must exceed preStopSleepSeconds (%d) + config.session.shutdown_grace_secs (%d), or the kubelet kills ferry mid-drain" $t $pre $grace) -}}
{{- end -}}
{{- $t -}}
{{- end -}}
{{- end -}}

{{/* Refuse combinations that cannot work. */}}
{{- define "ferry.checks" -}}
{{- $log := dig "log" "kind" "embedded" .Values.config -}}
{{- $store := dig "store" "kind" "embedded" .Values.config -}}
{{- if and (or (eq $log "embedded") (eq $store "embedded")) (or (gt (int .Values.replicaCount) 1) .Values.autoscaling.enabled) -}}
{{- fail "config.log.kind and config.store.kind must be kafka and scylla for more than one replica or autoscaling: each pod's embedded backend is its own" -}}
{{- end -}}
{{- if not (has .Values.secrets.authMode (list "hs256" "jwks")) -}}
{{- fail "secrets.authMode must be hs256 or jwks" -}}
{{- end -}}
{{- if and (not .Values.secrets.existingSecret) (eq .Values.secrets.authMode "jwks") (not .Values.secrets.jwks) -}}
{{- fail "set secrets.jwks (or secrets.existingSecret) for authMode jwks" -}}
{{- end -}}
{{- if and (eq .Values.secrets.authMode "jwks") (not (and (dig "auth" "issuer" "" .Values.config) (dig "auth" "audience" "" .Values.config))) -}}
{{- fail "authMode jwks needs config.auth.issuer and config.auth.audience: ferry refuses public keys without them (a token the identity provider minted for another application would log in)" -}}
{{- end -}}
{{- range $k := list "pod" "data_dir" -}}
{{- if hasKey $.Values.config $k -}}
{{- fail (printf "config.%s is set by the chart; remove it from values" $k) -}}
{{- end -}}
{{- end -}}
{{- if or (dig "server" "listen" "" .Values.config) (dig "auth" "hs256_secret" "" .Values.config) (dig "auth" "jwks_file" "" .Values.config) (dig "api" "service_token" "" .Values.config) (dig "scylla" "password" "" .Values.config) -}}
{{- fail "server.listen, auth.hs256_secret, auth.jwks_file, api.service_token and scylla.password are set by the chart (secrets.*); remove them from config" -}}
{{- end -}}
{{- end -}}

{{/*
TOML rendering of .Values.config. Helm's toToml writes every YAML number as a float
(20 -> 20.0), which ferry's integer keys refuse, so whole numbers are written as
integers here. Null values are left out (TOML has no null: the key takes ferry's default).
*/}}
{{- define "ferry.toml" -}}
{{- include "ferry.toml.table" (dict "prefix" "" "table" .) -}}
{{- end -}}

{{- define "ferry.toml.table" -}}
{{- $prefix := .prefix -}}
{{- range $k, $v := .table -}}
{{- if not (or (kindIs "map" $v) (kindIs "invalid" $v)) }}
{{ include "ferry.toml.key" $k }} = {{ include "ferry.toml.value" $v }}
{{- end -}}
{{- end -}}
{{- range $k, $v := .table -}}
{{- if kindIs "map" $v -}}
{{- $p := include "ferry.toml.key" $k -}}
{{- if $prefix -}}{{- $p = printf "%s.%s" $prefix $p -}}{{- end }}

[{{ $p }}]
{{- include "ferry.toml.table" (dict "prefix" $p "table" $v) -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "ferry.toml.key" -}}
{{- if regexMatch "^[A-Za-z0-9_-]+$" . -}}{{ . }}{{- else -}}{{ toJson . }}{{- end -}}
{{- end -}}

{{- define "ferry.toml.value" -}}
{{- if kindIs "string" . -}}
{{- toJson . -}}
{{- else if kindIs "bool" . -}}
{{- ternary "true" "false" . -}}
{{- else if kindIs "float64" . -}}
{{- if eq (floor .) . -}}{{- printf "%.0f" . -}}{{- else -}}{{- printf "%v" . -}}{{- end -}}
{{- else if or (kindIs "int" .) (kindIs "int64" .) (kindIs "uint64" .) -}}
{{- printf "%d" . -}}
{{- else if kindIs "slice" . -}}
[{{- range $i, $e := . -}}{{- if $i -}}, {{ end -}}{{- include "ferry.toml.value" $e -}}{{- end -}}]
{{- else -}}
{{- fail (printf "config: cannot write %v (%s) as TOML" . (kindOf .)) -}}
{{- end -}}
{{- end -}}

{{/* Environment shared by the ferry pods and the migrate Job. */}}
{{- define "ferry.env" -}}
- name: FERRY_CONFIG
  value: /etc/ferry/ferry.toml
- name: FERRY_DATA_DIR
  value: /var/lib/ferry
- name: FERRY_SERVER__LISTEN
  value: {{ printf "0.0.0.0:%d" (int .Values.containerPort) | quote }}
{{- if include "ferry.hasScyllaPassword" . }}
- name: FERRY_SCYLLA__PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ include "ferry.secretName" . }}
      key: scylla-password
{{- end }}
{{- with .Values.tracing }}
{{- if .otlpEndpoint }}
- name: FERRY_TELEMETRY__OTLP_ENDPOINT
  value: {{ .otlpEndpoint | quote }}
{{- end }}
{{- if not (kindIs "invalid" .sampleRatio) }}{{ if ne (toString .sampleRatio) "" }}
- name: FERRY_TELEMETRY__SAMPLE_RATIO
  value: {{ toString .sampleRatio | quote }}
{{- end }}{{ end }}
{{- if .serviceName }}
- name: FERRY_TELEMETRY__SERVICE_NAME
  value: {{ .serviceName | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{/* base64 of: the given value, else the one in the current Secret, else a new random one. */}}
{{- define "ferry.secretValue" -}}
{{- $given := index . 0 -}}{{- $current := index . 1 -}}{{- $key := index . 2 -}}
{{- if $given -}}
{{- $given | b64enc -}}
{{- else if hasKey $current $key -}}
{{- index $current $key -}}
{{- else -}}
{{- randAlphaNum 48 | b64enc -}}
{{- end -}}
{{- end -}}
