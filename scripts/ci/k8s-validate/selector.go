package main

import (
	"fmt"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
)

// metaSelector turns a workload's label selector into a matcher; an absent or empty
// selector is an error, since it would select every pod in the namespace.
func metaSelector(ls *metav1.LabelSelector) (labels.Selector, error) {
	if ls == nil || (len(ls.MatchLabels) == 0 && len(ls.MatchExpressions) == 0) {
		return nil, fmt.Errorf("absent or empty selector")
	}
	return metav1.LabelSelectorAsSelector(ls)
}
