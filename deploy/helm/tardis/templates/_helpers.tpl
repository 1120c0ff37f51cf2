{{/* Names, labels and shared pod pieces of the Tardis chart. */}}

{{- define "tardis.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tardis.labels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: tardis
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* selector labels of one component: include "tardis.selector" (list . "catalog") */}}
{{- define "tardis.selector" -}}
{{- $root := index . 0 -}}
app.kubernetes.io/name: {{ $root.Chart.Name }}
app.kubernetes.io/instance: {{ $root.Release.Name }}
app.kubernetes.io/component: {{ index . 1 }}
{{- end -}}

{{- define "tardis.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "tardis.secretName" -}}
{{- default (printf "%s-secrets" (include "tardis.fullname" .)) .Values.secrets.existingSecret -}}
{{- end -}}

{{- define "tardis.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "tardis.fullname" .)) .Values.tls.existingSecret -}}
{{- end -}}

{{/* pod-level settings shared by every component */}}
{{- define "tardis.podSpec" -}}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
terminationGracePeriodSeconds: 15
enableServiceLinks: false
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* volumes every component mounts: secrets, TLS, a writable /tmp */}}
{{- define "tardis.volumes" -}}
- name: secrets
  secret:
    secretName: {{ include "tardis.secretName" . }}
    defaultMode: 0440
    optional: false  # explicit: podman kube play 4.3 dereferences it
- name: tls
  secret:
    secretName: {{ include "tardis.tlsSecretName" . }}
    defaultMode: 0440
    optional: false
- name: tmp
  emptyDir:
    medium: Memory
    sizeLimit: 64Mi
{{- end -}}

{{- define "tardis.volumeMounts" -}}
- name: secrets
  mountPath: /secrets
  readOnly: true
- name: tls
  mountPath: /tls
  readOnly: true
- name: tmp
  mountPath: /tmp
{{- end -}}

{{- define "tardis.container" -}}
image: {{ include "tardis.image" . }}
imagePullPolicy: {{ .Values.image.pullPolicy }}
securityContext:
  {{- toYaml .Values.securityContext | nindent 2 }}
envFrom:
  - configMapRef:
      name: {{ include "tardis.fullname" . }}
{{- end -}}

{{- define "tardis.podAnnotations" -}}
checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
{{- if and .Values.metrics.enabled .Values.metrics.podAnnotations }}
prometheus.io/scrape: "true"
prometheus.io/port: {{ .Values.metrics.port | quote }}
prometheus.io/path: /metrics
{{- end }}
{{- end -}}
