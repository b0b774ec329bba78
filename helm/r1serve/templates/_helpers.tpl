{{/*
Helpers of the r1serve chart. Every name starts with "r1serve." so that a parent chart's
helpers never collide with these.
*/}}

{{/* Chart name, or nameOverride. */}}
{{- define "r1serve.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
Prefix of every object name. Cut to 40 characters: KubeRay appends a cluster suffix, a group
name and a pod suffix to it, and pod names and labels stop at 63.
*/}}
{{- define "r1serve.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "r1serve.selectorLabels" -}}
app.kubernetes.io/name: {{ include "r1serve.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* Labels of the serving cluster's Ray pods (head and workers), and only theirs. */}}
{{- define "r1serve.rayPodLabels" -}}
{{ include "r1serve.selectorLabels" . }}
r1serve.io/ray: serving
{{- end -}}

{{- define "r1serve.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "r1serve.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "r1serve.image" -}}
{{- printf "%s:%s" .Values.image.repository (required "image.tag is required: pin the r1serve image version" .Values.image.tag) -}}
{{- end -}}

{{/* The chosen profile, as YAML. Fails with the fix when none or an unknown one is chosen. */}}
{{- define "r1serve.profile" -}}
{{- $name := required "profile is required: --set profile=h200x8, h100x16, h800x32-wide-ep, distill-qwen-32b or custom" .Values.profile -}}
{{- $p := index .Values.profiles $name -}}
{{- if not $p -}}
{{- fail (printf "profile %q is unknown: use h200x8, h100x16, h800x32-wide-ep, distill-qwen-32b or custom (or define profiles.%s)" $name $name) -}}
{{- end -}}
{{- $_ := required (printf "profiles.%s.nodesPerReplica is required with profile=%s: the nodes one model replica spans" $name $name) $p.nodesPerReplica -}}
{{- $_ := required (printf "profiles.%s.gpusPerNode is required with profile=%s" $name $name) $p.gpusPerNode -}}
{{- toYaml $p -}}
{{- end -}}

{{/*
Deep merge of (list DST SRC) into DST. Unlike mergeOverwrite, a false, 0 or "" in SRC wins over
DST: `--set config.engine.dp_attention=false` must turn the profile's true off.
*/}}
{{- define "r1serve.merge" -}}
{{- $dst := index . 0 -}}
{{- range $k, $v := index . 1 -}}
{{- if and (kindIs "map" $v) (kindIs "map" (index $dst $k)) -}}
{{- include "r1serve.merge" (list (index $dst $k) $v) -}}
{{- else -}}
{{- $_ := set $dst $k $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
The weights to serve: weights.repoId, weights.subPath and weights.pvc.size, except that a value
left at its R1 default gives way to the profile's own (profiles.NAME.weights), so that a
distilled model's profile downloads that model.
*/}}
{{- define "r1serve.weights" -}}
{{- $p := include "r1serve.profile" . | fromYaml -}}
{{- $w := dict "repoId" .Values.weights.repoId "subPath" .Values.weights.subPath "size" .Values.weights.pvc.size -}}
{{- $r1 := dict "repoId" "deepseek-ai/DeepSeek-R1" "subPath" "DeepSeek-R1" "size" "1Ti" -}}
{{- range $k, $v := default (dict) $p.weights -}}
{{- if eq (toString (index $w $k)) (index $r1 $k) -}}
{{- $_ := set $w $k $v -}}
{{- end -}}
{{- end -}}
{{- toYaml $w -}}
{{- end -}}

{{- define "r1serve.modelPath" -}}
{{- $w := include "r1serve.weights" . | fromYaml -}}
{{- printf "%s/%s" (trimSuffix "/" .Values.weights.mountPath) $w.subPath -}}
{{- end -}}

{{/*
The r1serve configuration of the Serve application (R1ServeConfig keys), as YAML: the profile's
config, then `config`, then what the chart must own (topology, bind address, key variable).
*/}}
{{- define "r1serve.config" -}}
{{- $p := include "r1serve.profile" . | fromYaml -}}
{{- $cfg := dict -}}
{{- include "r1serve.merge" (list $cfg (deepCopy (default (dict) $p.config))) -}}
{{- include "r1serve.merge" (list $cfg (deepCopy .Values.config)) -}}
{{- $engine := default (dict) $cfg.engine -}}
{{- range $key, $want := dict "nodes_per_replica" (int $p.nodesPerReplica) "devices_per_node" (int $p.gpusPerNode) -}}
{{- if and (hasKey $engine $key) (ne (int (index $engine $key)) $want) -}}
{{- fail (printf "config.engine.%s=%v contradicts profile %s (%d): the profile sets the GPU topology; use profile=custom for another" $key (index $engine $key) $.Values.profile $want) -}}
{{- end -}}
{{- $_ := set $engine $key $want -}}
{{- end -}}
{{- $_ := required (printf "config.engine.backend_args.profile is required with profile=%s: the SGLang flag profile for these GPUs" .Values.profile) (dig "backend_args" "profile" "" $engine) -}}
{{- $_ := set $cfg "engine" $engine -}}
{{- $model := default (dict) $cfg.model -}}
{{- if not (hasKey $model "path") -}}
{{- $_ := set $model "path" (include "r1serve.modelPath" .) -}}
{{- end -}}
{{- $_ := set $cfg "model" $model -}}
{{- $api := default (dict) $cfg.api -}}
{{- $_ := set $api "host" "0.0.0.0" -}}
{{- if .Values.apiKeys.enabled -}}
{{- $_ := set $api "api_keys_env" .Values.apiKeys.envVar -}}
{{- end -}}
{{- $_ := set $cfg "api" $api -}}
{{- toYaml $cfg -}}
{{- end -}}

{{/* Port of the OpenAI API (config api.port, default 8000). */}}
{{- define "r1serve.apiPort" -}}
{{- $cfg := include "r1serve.config" . | fromYaml -}}
{{- dig "api" "port" 8000 $cfg | int -}}
{{- end -}}

{{/* Name of the API Service: KubeRay's serve Service, named by the chart. */}}
{{- define "r1serve.apiServiceName" -}}
{{- printf "%s-api" (include "r1serve.fullname" .) -}}
{{- end -}}

{{/* Environment variable with the API keys, from the Secret. */}}
{{- define "r1serve.apiKeysEnv" -}}
{{- if .Values.apiKeys.enabled -}}
- name: {{ .Values.apiKeys.envVar }}
  valueFrom:
    secretKeyRef:
      name: {{ required "apiKeys.existingSecret is required with apiKeys.enabled: the Secret holding the API keys" .Values.apiKeys.existingSecret }}
      key: {{ .Values.apiKeys.secretKey }}
{{- end }}
{{- end -}}

{{/* Serve's HTTP proxy runs on every Ray node: its deadline on request heads
(serve/header_timeout.py), installed through Serve's proxy callback. */}}
{{- define "r1serve.proxyEnv" -}}
- name: RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH
  value: serve.header_timeout:proxy_callback
- name: R1SERVE_HTTP_HEADER_TIMEOUT_S
  value: {{ .Values.proxy.headerTimeoutS | quote }}
{{- end -}}

{{/* The weights volume of Ray pods and the download Job. */}}
{{- define "r1serve.weightsVolume" -}}
- name: weights
{{- if eq .Values.weights.storage "hostPath" }}
  hostPath:
    path: {{ required "weights.hostPath is required with weights.storage=hostPath: a directory on every GPU node" .Values.weights.hostPath }}
    type: DirectoryOrCreate
{{- else }}
  persistentVolumeClaim:
    claimName: {{ include "r1serve.weightsClaim" . }}
{{- end }}
{{- end -}}

{{- define "r1serve.weightsClaim" -}}
{{- default (printf "%s-weights" (include "r1serve.fullname" .)) .Values.weights.pvc.existingClaim -}}
{{- end -}}

{{/* Marker file written after a complete download; its content is repo@revision. */}}
{{- define "r1serve.weightsMarker" -}}
{{- printf "%s/.r1serve-download-complete" (include "r1serve.modelPath" .) -}}
{{- end -}}

{{/*
Idempotent download: nothing to do when the marker names the wanted repo@revision. Environment:
HF_REPO, HF_REVISION, DEST, MARKER, ALLOW_PATTERNS (JSON list, or empty for everything).
*/}}
{{- define "r1serve.downloadScript" -}}
set -eu
want="${HF_REPO}@${HF_REVISION}"
if [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ]; then
  echo "r1serve: $want is already in $DEST"
  exit 0
fi
mkdir -p "$DEST"
python - <<'PY'
import json, os
from huggingface_hub import snapshot_download
patterns = json.loads(os.environ.get("ALLOW_PATTERNS") or "null")
snapshot_download(repo_id=os.environ["HF_REPO"], revision=os.environ["HF_REVISION"],
                  local_dir=os.environ["DEST"], allow_patterns=patterns,
                  max_workers=int(os.environ["MAX_WORKERS"]))
PY
if [ -z "${ALLOW_PATTERNS:-}" ]; then
  printf '%s' "$want" > "$MARKER"
fi
echo "r1serve: downloaded $want to $DEST"
{{- end -}}

{{- define "r1serve.waitScript" -}}
want="${HF_REPO}@${HF_REVISION}"
until [ -f "$MARKER" ] && [ "$(cat "$MARKER")" = "$want" ]; do
  echo "r1serve: waiting for the weights Job to finish $want in $DEST"
  sleep 30
done
{{- end -}}

{{/*
Init container that makes the weights present before Ray starts. (dict "ctx" $ "tokenizerOnly"
BOOL): the head needs the tokenizer and config files only.
*/}}
{{- define "r1serve.weightsInitContainer" -}}
{{- $ := .ctx -}}
{{- $w := $.Values.weights -}}
{{- if ne $w.download.mode "none" -}}
- name: weights
  image: {{ include "r1serve.image" $ }}
  imagePullPolicy: {{ $.Values.image.pullPolicy }}
  command: ["/bin/sh", "-c"]
  {{- if eq $w.download.mode "job" }}
  args:
    - |
      {{- include "r1serve.waitScript" $ | nindent 6 }}
  {{- else }}
  args:
    - |
      {{- include "r1serve.downloadScript" $ | nindent 6 }}
  {{- end }}
  env:
    {{- include "r1serve.downloadEnv" $ | nindent 4 }}
    {{- if .tokenizerOnly }}
    - name: ALLOW_PATTERNS
      value: '["*.json", "*.jinja", "*.py", "*.txt", "*.model"]'
    {{- end }}
  resources:
    {{- toYaml $w.download.resources | nindent 4 }}
  securityContext:
    {{- toYaml $.Values.securityContext.container | nindent 4 }}
  volumeMounts:
    - name: weights
      mountPath: {{ $w.mountPath }}
{{- end }}
{{- end -}}

{{- define "r1serve.downloadEnv" -}}
- name: HF_REPO
  value: {{ (include "r1serve.weights" . | fromYaml).repoId | quote }}
- name: HF_REVISION
  value: {{ .Values.weights.revision | quote }}
- name: DEST
  value: {{ include "r1serve.modelPath" . | quote }}
- name: MARKER
  value: {{ include "r1serve.weightsMarker" . | quote }}
- name: MAX_WORKERS
  value: {{ .Values.weights.download.maxWorkers | quote }}
- name: HF_HOME
  value: {{ printf "%s/.hf-home" (trimSuffix "/" .Values.weights.mountPath) | quote }}
{{- if .Values.weights.download.hfTokenSecret }}
- name: HF_TOKEN
  valueFrom:
    secretKeyRef:
      name: {{ .Values.weights.download.hfTokenSecret }}
      key: {{ .Values.weights.download.hfTokenSecretKey }}
{{- end }}
{{- end -}}

{{/* Probes of a Ray container on the dashboard agent's raylet health endpoint. */}}
{{- define "r1serve.probes" -}}
{{- $p := .Values.probes -}}
startupProbe:
  httpGet:
    path: /api/local_raylet_healthz
    port: 52365
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: {{ div $p.startupTimeoutSeconds $p.periodSeconds | max 1 }}
  timeoutSeconds: 5
livenessProbe:
  httpGet:
    path: /api/local_raylet_healthz
    port: 52365
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: {{ $p.failureThreshold }}
  timeoutSeconds: 5
readinessProbe:
  httpGet:
    path: /api/local_raylet_healthz
    port: 52365
  periodSeconds: {{ $p.periodSeconds }}
  failureThreshold: 3
  timeoutSeconds: 5
{{- end -}}
