// Command lint checks duebridge's Kubernetes manifests offline: every
// document of every listed file must decode strictly (no unknown or
// misspelt field, every value of the right type) into the Kubernetes API
// type its apiVersion and kind name, Deployments must probe /healthz and
// /readyz, and the kustomization's resources must exist. Schema validators
// such as kubeconform need their schemas fetched from the network; the API
// types themselves are the schema here.
//
//	go run . [-config out.yaml] ../*.yaml
//
// -config writes the duebridge config embedded in the ConfigMap, for
// `duebridge check-config`.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"
)

type typeMeta struct {
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
}

type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

func main() {
	configOut := flag.String("config", "", "write the ConfigMap's duebridge.yaml here")
	flag.Parse()
	var errs []error
	objects := 0
	for _, path := range flag.Args() {
		n, err := lintFile(path, *configOut)
		objects += n
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", path, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if objects == 0 {
		fmt.Fprintln(os.Stderr, "no Kubernetes objects checked")
		os.Exit(1)
	}
	fmt.Printf("%d Kubernetes objects valid\n", objects)
}

func lintFile(path, configOut string) (int, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	n := 0
	for i, doc := range bytes.Split(data, []byte("\n---")) {
		if len(bytes.TrimSpace(stripComments(doc))) == 0 {
			continue
		}
		var tm typeMeta
		if err := yaml.Unmarshal(doc, &tm); err != nil {
			return n, fmt.Errorf("document %d: %w", i, err)
		}
		if err := lintObject(path, tm, doc, configOut); err != nil {
			return n, fmt.Errorf("document %d (%s %s): %w", i, tm.APIVersion, tm.Kind, err)
		}
		n++
	}
	return n, nil
}

func stripComments(doc []byte) []byte {
	var out [][]byte
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			out = append(out, l)
		}
	}
	return bytes.Join(out, []byte("\n"))
}

func lintObject(path string, tm typeMeta, doc []byte, configOut string) error {
	switch tm.APIVersion + "/" + tm.Kind {
	case "apps/v1/Deployment":
		var d appsv1.Deployment
		if err := yaml.UnmarshalStrict(doc, &d); err != nil {
			return err
		}
		return checkDeployment(&d)
	case "v1/Service":
		var s corev1.Service
		if err := yaml.UnmarshalStrict(doc, &s); err != nil {
			return err
		}
		if len(s.Spec.Selector) == 0 || len(s.Spec.Ports) == 0 {
			return errors.New("a Service needs a selector and ports")
		}
		return nil
	case "v1/Secret":
		var s corev1.Secret
		return yaml.UnmarshalStrict(doc, &s)
	case "v1/ConfigMap":
		var c corev1.ConfigMap
		if err := yaml.UnmarshalStrict(doc, &c); err != nil {
			return err
		}
		cfg, ok := c.Data["duebridge.yaml"]
		if !ok {
			return errors.New("no duebridge.yaml key")
		}
		if configOut != "" {
			return os.WriteFile(configOut, []byte(cfg), 0o600)
		}
		return nil
	case "kustomize.config.k8s.io/v1beta1/Kustomization":
		var k kustomization
		if err := yaml.UnmarshalStrict(doc, &k); err != nil {
			return err
		}
		for _, r := range k.Resources {
			if _, err := os.Stat(filepath.Join(filepath.Dir(path), r)); err != nil {
				return fmt.Errorf("resource %s: %w", r, err)
			}
		}
		return nil
	}
	return fmt.Errorf("unknown kind: add it to the linter")
}

func checkDeployment(d *appsv1.Deployment) error {
	sel := d.Spec.Selector
	if sel == nil || len(sel.MatchLabels) == 0 {
		return errors.New("no selector")
	}
	for k, v := range sel.MatchLabels {
		if d.Spec.Template.Labels[k] != v {
			return fmt.Errorf("selector %s=%s does not match the pod template", k, v)
		}
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			return fmt.Errorf("container %s: liveness probe must GET /healthz", c.Name)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			return fmt.Errorf("container %s: readiness probe must GET /readyz", c.Name)
		}
		if !strings.HasPrefix(c.Image, "duebridge") {
			return fmt.Errorf("container %s: image %s", c.Name, c.Image)
		}
	}
	return nil
}
