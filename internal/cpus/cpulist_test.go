package cpus

import (
	"slices"
	"testing"
)

func TestParseList(t *testing.T) {
	tests := []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{"", nil, false},
		{"0\n", []int{0}, false},
		{"0-3", []int{0, 1, 2, 3}, false},
		{"0-1,4,6-7", []int{0, 1, 4, 6, 7}, false},
		{"5,1,1-2", []int{1, 2, 5}, false},
		{"3-1", nil, true},
		{"a", nil, true},
		{"1,", nil, true},
		{"-1", nil, true},
		{"0-99999999", nil, true},
	}
	for _, tc := range tests {
		got, err := parseList(tc.in)
		if (err != nil) != tc.wantErr || !slices.Equal(got, tc.want) {
			t.Errorf("parseList(%q) = %v, %v; want %v, error %v", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestFormatList(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{3}, "3"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{0, 2, 3, 4, 7}, "0,2-4,7"},
	} {
		if got := formatList(tc.in); got != tc.want {
			t.Errorf("formatList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// FuzzParseList checks that hostile /proc and sysfs text gives an error,
// never a panic, and that whatever parses formats back to the same set.
func FuzzParseList(f *testing.F) {
	for _, s := range []string{"0-3,8", "1", "", "3-1", "0-1,1-2", "9999999999"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseList(s)
		if err != nil {
			return
		}
		again, err := parseList(formatList(got))
		if err != nil || !slices.Equal(again, got) {
			t.Fatalf("parseList(formatList(%v)) = %v, %v", got, again, err)
		}
	})
}
