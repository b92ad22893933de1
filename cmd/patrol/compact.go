package main

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// compactHosts joins host names for a human, folding runs of names that
// differ only in a trailing number into Ansible's range form (web01, web02,
// web03 as web[01:03]), and listing at most max items.
func compactHosts(hosts []string, max int) string {
	type key struct{ prefix, suffix string }
	type numbered struct {
		n     int
		width int
		text  string
	}
	groups := map[key][]numbered{}
	var plain []string
	for _, h := range hosts {
		pre, num, suf, ok := splitNumber(h)
		if !ok {
			plain = append(plain, h)
			continue
		}
		n, _ := strconv.Atoi(num)
		groups[key{pre, suf}] = append(groups[key{pre, suf}], numbered{n, len(num), num})
	}
	var items []string
	for k, nums := range groups {
		sort.Slice(nums, func(i, j int) bool { return nums[i].n < nums[j].n })
		for i := 0; i < len(nums); {
			j := i
			for j+1 < len(nums) && nums[j+1].n == nums[j].n+1 && nums[j+1].width == nums[i].width {
				j++
			}
			if j > i {
				items = append(items, fmt.Sprintf("%s[%s:%s]%s", k.prefix, nums[i].text, nums[j].text, k.suffix))
			} else {
				items = append(items, k.prefix+nums[i].text+k.suffix)
			}
			i = j + 1
		}
	}
	items = append(items, plain...)
	sort.Strings(items)
	if len(items) > max {
		return strings.Join(items[:max], ", ") + fmt.Sprintf(" (+%d more)", len(items)-max)
	}
	return strings.Join(items, ", ")
}

// splitNumber splits a name around its last run of digits.
func splitNumber(s string) (prefix, num, suffix string, ok bool) {
	end := -1
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] >= '0' && s[i] <= '9' {
			end = i + 1
			break
		}
	}
	if end < 0 {
		return "", "", "", false
	}
	start := end
	for start > 0 && s[start-1] >= '0' && s[start-1] <= '9' {
		start--
	}
	return s[:start], s[start:end], s[end:], true
}
