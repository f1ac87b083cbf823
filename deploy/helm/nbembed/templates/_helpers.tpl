{{/* The three services, in one place. */}}
{{- define "nbembed.services" -}}
gateway
provisioner
sync
{{- end -}}

{{- define "nbembed.fullname" -}}
{{- printf "%s-%s" .root.Release.Name .service | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "nbembed.selectorLabels" -}}
app.kubernetes.io/name: nbembed
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .service }}
{{- end -}}

{{- define "nbembed.labels" -}}
{{ include "nbembed.selectorLabels" . }}
app.kubernetes.io/version: {{ .root.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .root.Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .root.Chart.Name .root.Chart.Version }}
{{- end -}}

{{/* The HTTP port a service listens on: the gateway's API, the others' health and internal API. */}}
{{- define "nbembed.port" -}}
{{- $settings := (index .root.Values .service).settings -}}
{{- if eq .service "gateway" -}}{{ $settings.port }}{{- else -}}{{ $settings.health_port }}{{- end -}}
{{- end -}}

{{/* A Service's in-cluster URL. */}}
{{- define "nbembed.url" -}}
http://{{ include "nbembed.fullname" . }}:{{ (index .root.Values .service).service.port }}
{{- end -}}

{{/* Environment of one service: NBEMBED_<SERVICE>_<SETTING>, values first, then the chart's own. */}}
{{- define "nbembed.env" -}}
{{- $root := .root -}}
{{- $values := index $root.Values .service -}}
{{- $prefix := printf "NBEMBED_%s_" (upper .service) -}}
{{- $settings := merge (dict) $values.settings $root.Values.common.settings -}}
{{- $_ := set $settings "kafka_bootstrap" $root.Values.kafka.bootstrap -}}
{{- $_ := set $settings "kafka_username" (printf "nbembed-%s" .service) -}}
{{- $_ := set $settings "mongodb_uri" $root.Values.mongodb.uri -}}
{{- $_ := set $settings "mongodb_username" .service -}}
{{- $_ := set $settings "http_host" "0.0.0.0" -}}
{{- $_ := set $settings "hub_url" $root.Values.hubApiUrl -}}
{{- if ne .service "provisioner" }}
{{- $_ := set $settings "public_hub_url" $root.Values.hubUrl -}}
{{- $_ := set $settings "subdomain_host" $root.Values.subdomainHost -}}
{{- end }}
{{- if eq .service "gateway" }}
{{- $_ := set $settings "sync_url" (include "nbembed.url" (dict "root" $root "service" "sync")) -}}
{{- end }}
{{- if eq .service "sync" }}
{{- $_ := set $settings "provisioner_url" (include "nbembed.url" (dict "root" $root "service" "provisioner")) -}}
{{- end }}
{{- range $name := keys $settings | sortAlpha }}
{{- $value := index $settings $name }}
{{- /* YAML numbers reach templates as floats: 10485760 must not become 1.048576e+07. */}}
{{- if and (kindIs "float64" $value) (eq (floor $value) $value) }}{{ $value = int64 $value }}{{ end }}
- name: {{ printf "%s%s" $prefix (upper $name) }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- range $name := keys $values.secrets | sortAlpha }}
- name: {{ printf "%s%s_FILE" $prefix (upper $name) }}
  value: {{ printf "/var/run/secrets/nbembed/%s" $name | quote }}
{{- end }}
{{- end -}}
