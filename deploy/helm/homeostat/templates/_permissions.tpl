{{/*
The RBAC rules for the enabled actions (rbac.actions) and the kubernetes_events source
(rbac.source): the table of crates/kubernetes/src/permissions.rs, written as template. Keep the
two in sync; crates/kubernetes/tests/it/deploy.rs renders this chart with several values and fails
when a rendered grant differs from permissions::rules (an extra verb, or a missing one).
One rule per action and resource group, unmerged, so the rendered Role says who needs what.
*/}}

{{/* Grants made in a Role in every namespace of watchNamespaces. */}}
{{- define "homeostat.rules.namespaced" -}}
{{- $actions := .Values.rbac.actions }}
{{- $source := .Values.rbac.source }}
{{- if $source.enabled }}
# source kubernetes_events: Events, and the pod and ReplicaSet of an Event's owner lookup.
- apiGroups: [""]
  resources: [events]
  verbs: [list, watch]
- apiGroups: [""]
  resources: [pods]
  verbs: [get]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [get]
{{- if $source.pods }}
# source kubernetes_events, pods: true: pod states.
- apiGroups: [""]
  resources: [pods]
  verbs: [list, watch]
{{- end }}
{{- if $source.deployments }}
# source kubernetes_events, deployments: true: rollouts.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [list, watch]
{{- end }}
{{- end }}
{{- if has "kubernetes.rollout_restart" $actions }}
# kubernetes.rollout_restart
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
{{- end }}
{{- if has "kubernetes.scale" $actions }}
# kubernetes.scale: the scale subresources only.
- apiGroups: [apps]
  resources: [deployments/scale, statefulsets/scale, replicasets/scale]
  verbs: [get, patch]
{{- end }}
{{- if has "kubernetes.rollout_undo" $actions }}
# kubernetes.rollout_undo: the previous revision's ReplicaSet, patched back into the Deployment.
- apiGroups: [apps]
  resources: [deployments]
  verbs: [get, patch]
- apiGroups: [apps]
  resources: [replicasets]
  verbs: [list]
{{- end }}
{{- if has "kubernetes.delete_pod" $actions }}
# kubernetes.delete_pod
- apiGroups: [""]
  resources: [pods]
  verbs: [get, delete]
{{- end }}
{{- if has "kubernetes.patch" $actions }}
# kubernetes.patch: labels, annotations and (workloads) env.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods, services, configmaps]
  verbs: [get, patch]
{{- end }}
{{- if has "kubernetes.wait_rollout" $actions }}
# kubernetes.wait_rollout: reads status only.
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [get]
{{- end }}
{{- end }}

{{/* Grants that only a ClusterRole can make: cluster-scoped resources, and drain's pods, which are
in whatever namespace the node runs them. */}}
{{- define "homeostat.rules.cluster" -}}
{{- $actions := .Values.rbac.actions }}
{{- if or (has "kubernetes.cordon" $actions) (has "kubernetes.uncordon" $actions) }}
# kubernetes.cordon, kubernetes.uncordon: spec.unschedulable.
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, patch]
{{- end }}
{{- if has "kubernetes.drain" $actions }}
# kubernetes.drain: cordon, list the node's pods in every namespace, evict them (respecting
# PodDisruptionBudgets), delete the finished ones.
- apiGroups: [""]
  resources: [nodes]
  verbs: [get, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list, get, delete]
- apiGroups: [""]
  resources: [pods/eviction]
  verbs: [create]
# kubernetes.drain: name the PodDisruptionBudget that refused an eviction.
- apiGroups: [policy]
  resources: [poddisruptionbudgets]
  verbs: [list]
{{- end }}
{{- if has "kubernetes.patch" $actions }}
# kubernetes.patch: labels and annotations of nodes and namespaces.
- apiGroups: [""]
  resources: [nodes, namespaces]
  verbs: [get, patch]
{{- end }}
{{- end }}
