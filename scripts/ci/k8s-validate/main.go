// k8s-validate checks rendered Kubernetes manifests (the output of `helm template`)
// without any network access:
//
//   - every document of a built-in kind is decoded with client-go's scheme and a
//     strict decoder: an unknown or duplicated field, a wrong type or an unknown
//     apiVersion/kind is an error (the same typed schema the API server decodes into);
//   - CRD kinds it knows (monitoring.coreos.com/v1 ServiceMonitor) get their
//     apiVersion, kind and required fields checked by hand;
//   - cross-references inside the release are checked: selectors match pod labels,
//     probes and Services point at declared container ports, HPA/PDB/Ingress/
//     ServiceMonitor targets exist, ConfigMaps and Secrets used by pods are rendered
//     (or listed with -external), every container has a name and an image.
//
// Usage: k8s-validate [-external secret/name,configmap/name] FILE...   ("-" = stdin)
package main

import (
	"bufio"
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/kubernetes/scheme"
	"sigs.k8s.io/yaml"
)

type doc struct {
	src  string // file:index, for messages
	obj  runtime.Object
	kind string
	name string
	raw  map[string]any // for CRDs
}

type checker struct {
	errs []string
	docs []doc
}

func (c *checker) fail(src, format string, args ...any) {
	c.errs = append(c.errs, fmt.Sprintf("%s: %s", src, fmt.Sprintf(format, args...)))
}

func main() {
	external := flag.String("external", "", "comma-separated kind/name of objects that exist outside the release (e.g. secret/ferry-prod)")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: k8s-validate [-external kind/name,...] FILE...")
		os.Exit(2)
	}
	c := &checker{}
	strict := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	for _, f := range flag.Args() {
		var r io.Reader
		if f == "-" {
			r = os.Stdin
		} else {
			fh, err := os.Open(f)
			if err != nil {
				c.fail(f, "%v", err)
				continue
			}
			defer fh.Close()
			r = fh
		}
		c.decodeFile(f, r, strict)
	}
	ext := map[string]bool{}
	for _, e := range strings.Split(*external, ",") {
		if e != "" {
			ext[strings.ToLower(e)] = true
		}
	}
	if len(c.docs) == 0 && len(c.errs) == 0 {
		c.fail("input", "no Kubernetes documents found")
	}
	c.crossCheck(ext)
	kinds := map[string]int{}
	for _, d := range c.docs {
		kinds[d.kind]++
	}
	if len(c.errs) > 0 {
		for _, e := range c.errs {
			fmt.Fprintln(os.Stderr, "ERROR", e)
		}
		fmt.Fprintf(os.Stderr, "k8s-validate: %d error(s) in %d document(s)\n", len(c.errs), len(c.docs))
		os.Exit(1)
	}
	fmt.Printf("k8s-validate: %d document(s) valid %v\n", len(c.docs), kinds)
}

func (c *checker) decodeFile(name string, r io.Reader, strict runtime.Decoder) {
	yr := utilyaml.NewYAMLReader(bufio.NewReader(r))
	for i := 0; ; i++ {
		chunk, err := yr.Read()
		if errors.Is(err, io.EOF) {
			return
		}
		src := fmt.Sprintf("%s#%d", name, i)
		if err != nil {
			c.fail(src, "reading YAML: %v", err)
			return
		}
		if len(bytes.TrimSpace(stripComments(chunk))) == 0 {
			continue
		}
		if s := sourceComment(chunk); s != "" {
			src = fmt.Sprintf("%s (%s)", src, s)
		}
		obj, gvk, err := strict.Decode(chunk, nil, nil)
		if err != nil && runtime.IsNotRegisteredError(err) {
			c.decodeCRD(src, chunk)
			continue
		}
		if err != nil {
			c.fail(src, "%v", err)
			continue
		}
		acc, ok := obj.(interface{ GetName() string })
		n := ""
		if ok {
			n = acc.GetName()
		}
		if n == "" {
			c.fail(src, "%s has no metadata.name", gvk.Kind)
		}
		c.docs = append(c.docs, doc{src: src, obj: obj, kind: gvk.Kind, name: n})
	}
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			out.WriteString(l + "\n")
		}
	}
	return out.Bytes()
}

// sourceComment returns the template path from helm's "# Source: ..." line.
func sourceComment(b []byte) string {
	for _, l := range strings.Split(string(b), "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(l), "# Source: "); ok {
			return s
		}
	}
	return ""
}

// decodeCRD checks the custom kinds the chart renders. They have no typed schema in
// client-go, so the fields the operator requires are checked by hand and any
// other field at the top level or in an endpoint is rejected.
func (c *checker) decodeCRD(src string, chunk []byte) {
	var m map[string]any
	if err := yaml.UnmarshalStrict(chunk, &m); err != nil {
		c.fail(src, "%v", err)
		return
	}
	u := unstructured.Unstructured{Object: m}
	gv, kind := u.GetAPIVersion(), u.GetKind()
	switch {
	case gv == "monitoring.coreos.com/v1" && kind == "ServiceMonitor":
		for k := range m {
			if !oneOf(k, "apiVersion", "kind", "metadata", "spec") {
				c.fail(src, "ServiceMonitor: unknown top-level field %q", k)
			}
		}
		if u.GetName() == "" {
			c.fail(src, "ServiceMonitor has no metadata.name")
		}
		spec, ok := m["spec"].(map[string]any)
		if !ok {
			c.fail(src, "ServiceMonitor: spec is required")
			return
		}
		known := []string{"selector", "endpoints", "namespaceSelector", "jobLabel", "targetLabels", "podTargetLabels", "sampleLimit", "scrapeProtocols", "attachMetadata", "scrapeClass", "labelLimit", "labelNameLengthLimit", "labelValueLengthLimit", "targetLimit", "keepDroppedTargets", "fallbackScrapeProtocol", "bodySizeLimit", "selectorMechanism", "nativeHistogramBucketLimit", "nativeHistogramMinBucketFactor", "convertClassicHistogramsToNHCB", "scrapeClassicHistograms"}
		for k := range spec {
			if !oneOf(k, known...) {
				c.fail(src, "ServiceMonitor: unknown field spec.%s", k)
			}
		}
		if _, ok := spec["selector"].(map[string]any); !ok {
			c.fail(src, "ServiceMonitor: spec.selector is required")
		}
		eps, ok := spec["endpoints"].([]any)
		if !ok || len(eps) == 0 {
			c.fail(src, "ServiceMonitor: spec.endpoints needs at least one endpoint")
		}
		epKnown := []string{"port", "targetPort", "path", "scheme", "params", "interval", "scrapeTimeout", "honorLabels", "honorTimestamps", "trackTimestampsStaleness", "metricRelabelings", "relabelings", "bearerTokenSecret", "authorization", "basicAuth", "oauth2", "tlsConfig", "followRedirects", "enableHttp2", "filterRunning", "proxyUrl", "noProxy", "proxyFromEnvironment", "proxyConnectHeader"}
		for i, e := range eps {
			em, ok := e.(map[string]any)
			if !ok {
				c.fail(src, "ServiceMonitor: spec.endpoints[%d] is not an object", i)
				continue
			}
			for k := range em {
				if !oneOf(k, epKnown...) {
					c.fail(src, "ServiceMonitor: unknown field spec.endpoints[%d].%s", i, k)
				}
			}
			if _, ok := em["port"].(string); !ok {
				c.fail(src, "ServiceMonitor: spec.endpoints[%d].port (a Service port name) is required", i)
			}
		}
		c.docs = append(c.docs, doc{src: src, kind: kind, name: u.GetName(), raw: m})
	default:
		c.fail(src, "unknown kind %s %s: not a built-in kind and no CRD check for it", gv, kind)
	}
}

func oneOf(s string, set ...string) bool {
	for _, x := range set {
		if s == x {
			return true
		}
	}
	return false
}

func (c *checker) crossCheck(ext map[string]bool) {
	have := map[string]bool{}
	for k := range ext {
		have[k] = true
	}
	for _, d := range c.docs {
		have[strings.ToLower(d.kind)+"/"+d.name] = true
	}
	var pods []struct {
		src    string
		labels map[string]string
	}
	services := map[string]*corev1.Service{}
	for _, d := range c.docs {
		switch o := d.obj.(type) {
		case *appsv1.Deployment:
			sel, err := metaSelector(o.Spec.Selector)
			if err != nil {
				c.fail(d.src, "spec.selector: %v", err)
			} else if !sel.Matches(labels.Set(o.Spec.Template.Labels)) {
				c.fail(d.src, "spec.selector %s does not match the pod template labels %v", sel, o.Spec.Template.Labels)
			}
			c.checkPod(d.src, &o.Spec.Template.Spec, have)
			pods = append(pods, struct {
				src    string
				labels map[string]string
			}{d.src, o.Spec.Template.Labels})
		case *batchv1.Job:
			c.checkPod(d.src, &o.Spec.Template.Spec, have)
			if o.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyNever && o.Spec.Template.Spec.RestartPolicy != corev1.RestartPolicyOnFailure {
				c.fail(d.src, "a Job's restartPolicy must be Never or OnFailure")
			}
		case *corev1.Service:
			services[o.Name] = o
		}
	}
	matchesPod := func(sel labels.Selector) bool {
		for _, p := range pods {
			if sel.Matches(labels.Set(p.labels)) {
				return true
			}
		}
		return false
	}
	for _, d := range c.docs {
		switch o := d.obj.(type) {
		case *corev1.Service:
			if len(o.Spec.Selector) > 0 && !matchesPod(labels.SelectorFromSet(o.Spec.Selector)) {
				c.fail(d.src, "Service selector %v matches no rendered pod template", o.Spec.Selector)
			}
			for _, p := range o.Spec.Ports {
				if p.TargetPort.Type == 1 && !c.podPortNamed(p.TargetPort.StrVal) {
					c.fail(d.src, "Service port %s targets %q, which no container declares", p.Name, p.TargetPort.StrVal)
				}
			}
		case *policyv1.PodDisruptionBudget:
			sel, err := metaSelector(o.Spec.Selector)
			if err != nil || !matchesPod(sel) {
				c.fail(d.src, "PodDisruptionBudget selector matches no rendered pod template (%v)", err)
			}
			if (o.Spec.MinAvailable == nil) == (o.Spec.MaxUnavailable == nil) {
				c.fail(d.src, "PodDisruptionBudget needs exactly one of minAvailable and maxUnavailable")
			}
		case *autoscalingv2.HorizontalPodAutoscaler:
			t := o.Spec.ScaleTargetRef
			if !have[strings.ToLower(t.Kind)+"/"+t.Name] {
				c.fail(d.src, "HPA scaleTargetRef %s/%s is not rendered", t.Kind, t.Name)
			}
			if o.Spec.MinReplicas != nil && *o.Spec.MinReplicas > o.Spec.MaxReplicas {
				c.fail(d.src, "HPA minReplicas %d > maxReplicas %d", *o.Spec.MinReplicas, o.Spec.MaxReplicas)
			}
			if o.Spec.MaxReplicas < 1 {
				c.fail(d.src, "HPA maxReplicas must be at least 1")
			}
		case *networkingv1.Ingress:
			for _, r := range o.Spec.Rules {
				if r.HTTP == nil {
					continue
				}
				for _, p := range r.HTTP.Paths {
					if p.PathType == nil {
						c.fail(d.src, "Ingress path %q has no pathType", p.Path)
					}
					if p.Backend.Service == nil {
						c.fail(d.src, "Ingress path %q has no service backend", p.Path)
						continue
					}
					svc, ok := services[p.Backend.Service.Name]
					if !ok {
						c.fail(d.src, "Ingress path %q: Service %q is not rendered", p.Path, p.Backend.Service.Name)
						continue
					}
					if !servicePortExists(svc, p.Backend.Service.Port) {
						c.fail(d.src, "Ingress path %q: Service %q has no port %v", p.Path, svc.Name, p.Backend.Service.Port)
					}
					if strings.HasPrefix(p.Path, "/api") || strings.HasPrefix(p.Path, "/metrics") {
						c.fail(d.src, "Ingress exposes %q publicly: the server API and metrics must stay internal", p.Path)
					}
				}
			}
		}
		if d.kind == "ServiceMonitor" {
			spec := d.raw["spec"].(map[string]any)
			selm, _ := spec["selector"].(map[string]any)
			ml, _ := selm["matchLabels"].(map[string]any)
			set := labels.Set{}
			for k, v := range ml {
				set[k] = fmt.Sprint(v)
			}
			found := false
			for _, svc := range services {
				if labels.SelectorFromSet(set).Matches(labels.Set(svc.Labels)) {
					eps, _ := spec["endpoints"].([]any)
					found = true
					for _, e := range eps {
						port, _ := e.(map[string]any)["port"].(string)
						if !servicePortExists(svc, networkingv1.ServiceBackendPort{Name: port}) {
							c.fail(d.src, "ServiceMonitor endpoint port %q is not a port of Service %s", port, svc.Name)
						}
					}
				}
			}
			if !found {
				c.fail(d.src, "ServiceMonitor selector %v matches no rendered Service", ml)
			}
		}
	}
}

func servicePortExists(svc *corev1.Service, p networkingv1.ServiceBackendPort) bool {
	for _, sp := range svc.Spec.Ports {
		if (p.Name != "" && sp.Name == p.Name) || (p.Name == "" && sp.Port == p.Number) {
			return true
		}
	}
	return false
}

func (c *checker) podPortNamed(name string) bool {
	for _, d := range c.docs {
		if dep, ok := d.obj.(*appsv1.Deployment); ok {
			for _, ct := range dep.Spec.Template.Spec.Containers {
				for _, p := range ct.Ports {
					if p.Name == name {
						return true
					}
				}
			}
		}
	}
	return false
}

func (c *checker) checkPod(src string, ps *corev1.PodSpec, have map[string]bool) {
	if len(ps.Containers) == 0 {
		c.fail(src, "pod has no containers")
	}
	vols := map[string]corev1.Volume{}
	for _, v := range ps.Volumes {
		vols[v.Name] = v
		if v.ConfigMap != nil && !have["configmap/"+v.ConfigMap.Name] {
			c.fail(src, "volume %s: ConfigMap %q is neither rendered nor declared external", v.Name, v.ConfigMap.Name)
		}
		if v.Secret != nil && !have["secret/"+v.Secret.SecretName] {
			c.fail(src, "volume %s: Secret %q is neither rendered nor declared external", v.Name, v.Secret.SecretName)
		}
	}
	all := append(append([]corev1.Container{}, ps.InitContainers...), ps.Containers...)
	for _, ct := range all {
		if ct.Name == "" || ct.Image == "" {
			c.fail(src, "container %q needs a name and an image", ct.Name)
		}
		ports := map[string]bool{}
		for _, p := range ct.Ports {
			ports[p.Name] = true
		}
		for _, m := range ct.VolumeMounts {
			if _, ok := vols[m.Name]; !ok {
				c.fail(src, "container %s mounts undeclared volume %q", ct.Name, m.Name)
			}
		}
		for _, e := range ct.Env {
			if e.ValueFrom == nil {
				continue
			}
			if r := e.ValueFrom.SecretKeyRef; r != nil && !have["secret/"+r.Name] && (r.Optional == nil || !*r.Optional) {
				c.fail(src, "env %s: Secret %q is neither rendered nor declared external", e.Name, r.Name)
			}
			if r := e.ValueFrom.ConfigMapKeyRef; r != nil && !have["configmap/"+r.Name] {
				c.fail(src, "env %s: ConfigMap %q is neither rendered nor declared external", e.Name, r.Name)
			}
		}
		for what, pr := range map[string]*corev1.Probe{"liveness": ct.LivenessProbe, "readiness": ct.ReadinessProbe, "startup": ct.StartupProbe} {
			if pr == nil || pr.HTTPGet == nil {
				continue
			}
			if pr.HTTPGet.Port.Type == 1 && !ports[pr.HTTPGet.Port.StrVal] {
				c.fail(src, "container %s %s probe uses port %q, which it does not declare", ct.Name, what, pr.HTTPGet.Port.StrVal)
			}
		}
		if ps.TerminationGracePeriodSeconds != nil && ct.Lifecycle != nil && ct.Lifecycle.PreStop != nil && ct.Lifecycle.PreStop.Sleep != nil {
			if ct.Lifecycle.PreStop.Sleep.Seconds >= *ps.TerminationGracePeriodSeconds {
				c.fail(src, "preStop sleep is not shorter than terminationGracePeriodSeconds")
			}
		}
	}
}
