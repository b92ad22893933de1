package deploy_test

import (
	"bytes"
	"errors"
	"io"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	sigsyaml "sigs.k8s.io/yaml"
)

// kustomization is the part of kustomize's file format Patrol uses.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Namespace  string   `json:"namespace"`
	Resources  []string `json:"resources"`
	Images     []struct {
		Name    string `json:"name"`
		NewName string `json:"newName"`
		NewTag  string `json:"newTag"`
	} `json:"images"`
}

// manifests holds deploy/kubernetes decoded, by kind.
type manifests struct {
	namespaces    []corev1.Namespace
	configMaps    []corev1.ConfigMap
	secrets       []corev1.Secret // examples only: real ones are never shipped
	deployments   []appsv1.Deployment
	pdbs          []policyv1.PodDisruptionBudget
	services      []corev1.Service
	kustomization kustomization
}

// loadManifests strictly decodes every document of every YAML file in
// deploy/kubernetes into its Kubernetes type: an unknown or misspelt field
// anywhere fails, as kubectl's server-side validation would.
func loadManifests(t *testing.T) (manifests, []string) {
	t.Helper()
	dir := repo(t, "deploy", "kubernetes")
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	var m manifests
	var names []string
	for _, path := range files {
		name := filepath.Base(path)
		names = append(names, name)
		dec := yaml.NewDecoder(bytes.NewReader(readFile(t, path)))
		for i := 0; ; i++ {
			var node yaml.Node
			if err := dec.Decode(&node); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			doc, err := yaml.Marshal(&node)
			if err != nil {
				t.Fatal(err)
			}
			var head struct{ APIVersion, Kind string }
			if err := sigsyaml.Unmarshal(doc, &head); err != nil {
				t.Fatalf("%s, document %d: %v", name, i, err)
			}
			var into any
			switch head.APIVersion + " " + head.Kind {
			case "v1 Namespace":
				m.namespaces = append(m.namespaces, corev1.Namespace{})
				into = &m.namespaces[len(m.namespaces)-1]
			case "v1 ConfigMap":
				m.configMaps = append(m.configMaps, corev1.ConfigMap{})
				into = &m.configMaps[len(m.configMaps)-1]
			case "v1 Secret":
				m.secrets = append(m.secrets, corev1.Secret{})
				into = &m.secrets[len(m.secrets)-1]
			case "apps/v1 Deployment":
				m.deployments = append(m.deployments, appsv1.Deployment{})
				into = &m.deployments[len(m.deployments)-1]
			case "policy/v1 PodDisruptionBudget":
				m.pdbs = append(m.pdbs, policyv1.PodDisruptionBudget{})
				into = &m.pdbs[len(m.pdbs)-1]
			case "v1 Service":
				m.services = append(m.services, corev1.Service{})
				into = &m.services[len(m.services)-1]
			case "kustomize.config.k8s.io/v1beta1 Kustomization":
				into = &m.kustomization
			default:
				t.Fatalf("%s, document %d: %s %s: this test does not know the kind; add it to loadManifests", name, i, head.APIVersion, head.Kind)
			}
			if err := sigsyaml.UnmarshalStrict(doc, into); err != nil {
				t.Errorf("%s, document %d (%s): %v", name, i, head.Kind, err)
			}
		}
	}
	return m, names
}

// TestKubernetesManifests: the manifests decode strictly, kustomization.yaml
// lists every one but the examples, and the Secret stays an example.
func TestKubernetesManifests(t *testing.T) {
	t.Parallel()
	m, files := loadManifests(t)
	var want []string
	for _, f := range files {
		if f != "kustomization.yaml" && !strings.HasSuffix(f, ".example.yaml") {
			want = append(want, f)
		}
	}
	got := slices.Sorted(slices.Values(m.kustomization.Resources))
	if !slices.Equal(got, want) {
		t.Errorf("kustomization.yaml resources %v, want the manifests %v", got, want)
	}
	if len(m.namespaces) != 1 || m.kustomization.Namespace != m.namespaces[0].Name {
		t.Errorf("kustomization namespace %q, namespaces %v: want one, the same", m.kustomization.Namespace, m.namespaces)
	}
	for _, s := range m.secrets {
		if !slices.ContainsFunc(files, func(f string) bool {
			return strings.HasSuffix(f, ".example.yaml") && strings.Contains(string(readFile(t, repo(t, "deploy", "kubernetes", f))), "name: "+s.Name)
		}) {
			t.Errorf("Secret %s is shipped outside a *.example.yaml file: secrets are created by the operator", s.Name)
		}
	}
	images := map[string]bool{}
	for _, img := range m.kustomization.Images {
		images[img.Name] = true
	}
	for _, d := range m.deployments {
		for _, c := range d.Spec.Template.Spec.Containers {
			if !images[c.Image] {
				t.Errorf("deployment %s: image %q is not set by kustomization.yaml's images", d.Name, c.Image)
			}
		}
	}
}

// TestKubernetesDeployments: probes on /livez and /readyz through the port
// named metrics, scrape annotations on that port, a locked-down security
// context, resources, the configuration and TLS files wired through, two
// schedulers under a disruption budget, and workers given time to drain.
func TestKubernetesDeployments(t *testing.T) {
	t.Parallel()
	m, _ := loadManifests(t)
	if len(m.configMaps) != 1 {
		t.Fatalf("want one ConfigMap, have %d", len(m.configMaps))
	}
	config := m.configMaps[0]
	if config.Data["PATROL_ENDPOINTS"] == "" || config.Data["PATROL_PREFIX"] == "" {
		t.Errorf("ConfigMap %s: no PATROL_ENDPOINTS or PATROL_PREFIX", config.Name)
	}
	secretKeys := map[string][]string{} // the example Secrets' keys
	for _, s := range m.secrets {
		secretKeys[s.Name] = append(sortedKeys(s.StringData), sortedKeys(s.Data)...)
	}
	roles := map[string]int{}
	for _, d := range m.deployments {
		pod := d.Spec.Template
		role := pod.Labels["app.kubernetes.io/component"]
		roles[role]++
		sel := d.Spec.Selector.MatchLabels
		for k, v := range sel {
			if pod.Labels[k] != v {
				t.Errorf("deployment %s: selector %v does not match its pods' labels %v", d.Name, sel, pod.Labels)
			}
		}
		ps := pod.Spec.SecurityContext
		if ps == nil || ps.RunAsNonRoot == nil || !*ps.RunAsNonRoot || ps.SeccompProfile == nil || ps.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault {
			t.Errorf("deployment %s: pod securityContext %+v: want runAsNonRoot and seccompProfile RuntimeDefault", d.Name, ps)
		}
		if len(pod.Spec.Containers) != 1 {
			t.Fatalf("deployment %s: want one container", d.Name)
		}
		c := pod.Spec.Containers[0]
		if len(c.Args) == 0 {
			t.Fatalf("deployment %s: the container has no args (scheduler or worker)", d.Name)
		}
		port := int32(0)
		for _, p := range c.Ports {
			if p.Name == "metrics" {
				port = p.ContainerPort
			}
		}
		if port == 0 {
			t.Errorf("deployment %s: no container port named metrics", d.Name)
		}
		probes := map[string]*corev1.Probe{"/livez": c.LivenessProbe, "/readyz": c.ReadinessProbe}
		for path, p := range probes {
			if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != path || p.HTTPGet.Port.String() != "metrics" {
				t.Errorf("deployment %s: want an HTTP probe on %s, port metrics; have %+v", d.Name, path, p)
			}
		}
		env := map[string]string{}
		for _, e := range c.Env {
			env[e.Name] = e.Value
		}
		if env["PATROL_METRICS_ADDR"] != ":"+strconv.Itoa(int(port)) {
			t.Errorf("deployment %s: PATROL_METRICS_ADDR %q, want :%d (every interface, the metrics port)", d.Name, env["PATROL_METRICS_ADDR"], port)
		}
		a := pod.Annotations
		if a["prometheus.io/scrape"] != "true" || a["prometheus.io/port"] != strconv.Itoa(int(port)) || a["prometheus.io/path"] != "/metrics" {
			t.Errorf("deployment %s: scrape annotations %v, want scrape true, port %d, path /metrics", d.Name, a, port)
		}
		sc := c.SecurityContext
		if sc == nil || sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem ||
			sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation ||
			sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
			t.Errorf("deployment %s: container securityContext %+v: want readOnlyRootFilesystem, no privilege escalation, drop ALL", d.Name, sc)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("deployment %s: want cpu and memory requests and a memory limit, have %+v", d.Name, c.Resources)
		}
		if len(c.EnvFrom) != 1 || c.EnvFrom[0].ConfigMapRef == nil || c.EnvFrom[0].ConfigMapRef.Name != config.Name {
			t.Errorf("deployment %s: want envFrom the ConfigMap %s", d.Name, config.Name)
		}
		// Each TLS file the ConfigMap names is a key of a mounted Secret.
		for _, v := range []string{"PATROL_CACERT", "PATROL_CERT", "PATROL_KEY"} {
			file := config.Data[v]
			if file == "" {
				t.Errorf("ConfigMap %s: no %s", config.Name, v)
				continue
			}
			if !mountsSecretFile(pod.Spec, c, secretKeys, file) {
				t.Errorf("deployment %s: %s=%s is no key of a Secret mounted in the container (example Secrets: %v)", d.Name, v, file, secretKeys)
			}
		}
		switch role {
		case "worker":
			// The icmp check pings over unprivileged ICMP sockets, without
			// any capability.
			psc := pod.Spec.SecurityContext
			if psc == nil || !slices.Contains(psc.Sysctls, corev1.Sysctl{Name: "net.ipv4.ping_group_range", Value: "0 2147483647"}) {
				t.Errorf("deployment %s: no pod sysctl net.ipv4.ping_group_range=\"0 2147483647\" for the icmp check", d.Name)
			}
		}
		switch role {
		case "scheduler":
			if d.Spec.Replicas == nil || *d.Spec.Replicas != 2 {
				t.Errorf("deployment %s: want 2 scheduler replicas", d.Name)
			}
			if c.Args[0] != "scheduler" {
				t.Errorf("deployment %s: args %v do not run a scheduler", d.Name, c.Args)
			}
			if !slices.ContainsFunc(m.pdbs, func(p policyv1.PodDisruptionBudget) bool {
				for k, v := range p.Spec.Selector.MatchLabels {
					if pod.Labels[k] != v {
						return false
					}
				}
				return p.Spec.MinAvailable != nil && p.Spec.MinAvailable.IntValue() >= 1
			}) {
				t.Errorf("deployment %s: no PodDisruptionBudget keeps one scheduler up", d.Name)
			}
		case "worker":
			if c.Args[0] != "worker" {
				t.Errorf("deployment %s: args %v do not run a worker", d.Name, c.Args)
			}
			drain, err := time.ParseDuration(flagValue(c.Args, "--drain-timeout", "30s"))
			if err != nil {
				t.Errorf("deployment %s: %v", d.Name, err)
			}
			grace := pod.Spec.TerminationGracePeriodSeconds
			if grace == nil || time.Duration(*grace)*time.Second <= drain {
				t.Errorf("deployment %s: terminationGracePeriodSeconds must exceed the drain timeout %s", d.Name, drain)
			}
		case "web":
			if c.Args[0] != "web" {
				t.Errorf("deployment %s: args %v do not run patrol web", d.Name, c.Args)
			}
			// It serves plain HTTP in the cluster: said so, on a port a
			// Service sends to.
			if !slices.Contains(c.Args, "--insecure-listen") || flagValue(c.Args, "--listen", "") == "" {
				t.Errorf("deployment %s: args %v: want --listen :PORT --insecure-listen (TLS ends at the Ingress)", d.Name, c.Args)
			}
			if tokens := flagValue(c.Args, "--tokens", ""); tokens == "" || !mountsSecretFile(pod.Spec, c, secretKeys, tokens) {
				t.Errorf("deployment %s: --tokens %q is no key of a Secret mounted in the container (example Secrets: %v)", d.Name, tokens, secretKeys)
			}
			if !slices.ContainsFunc(m.services, func(svc corev1.Service) bool {
				for k, v := range svc.Spec.Selector {
					if pod.Labels[k] != v {
						return false
					}
				}
				return len(svc.Spec.Ports) > 0 && svc.Spec.Ports[0].TargetPort.String() == "http"
			}) {
				t.Errorf("deployment %s: no Service sends to its http port", d.Name)
			}
		default:
			t.Errorf("deployment %s: app.kubernetes.io/component %q is neither scheduler, worker nor web", d.Name, role)
		}
	}
	if roles["scheduler"] != 1 || roles["worker"] < 1 || roles["web"] != 1 {
		t.Errorf("deployments by role %v: want one scheduler Deployment, worker ones and one web", roles)
	}
}

// mountsSecretFile reports whether file is a key of a Secret volume that c
// mounts, in the Secrets the example manifests describe.
func mountsSecretFile(spec corev1.PodSpec, c corev1.Container, secretKeys map[string][]string, file string) bool {
	for _, vm := range c.VolumeMounts {
		rel, err := filepath.Rel(vm.MountPath, file)
		if err != nil || strings.HasPrefix(rel, "..") {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == vm.Name && v.Secret != nil && slices.Contains(secretKeys[v.Secret.SecretName], rel) {
				return true
			}
		}
	}
	return false
}
