package config

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"

	"github.com/spf13/viper"
)

// yamlLineRE finds the line number the YAML parser reports.
var yamlLineRE = regexp.MustCompile(`(?:While parsing config: )?yaml: (?:line \d+: )?`)

// syntaxError reports a YAML syntax error as file:line, the line itself and
// a caret. The parser's own line number often points at the start of the
// enclosing block (one or more lines early), so the line is found as the
// first one at which the file, cut there, stops parsing: a prefix of a
// well-formed YAML document nearly always parses.
func syntaxError(path string, b []byte, perr error) error {
	msg := strings.TrimSpace(yamlLineRE.ReplaceAllString(perr.Error(), ""))
	lines := strings.Split(string(b), "\n")
	bad := -1
	if len(lines) <= 2000 { // quadratic; config files are far smaller
		for n := 1; n <= len(lines); n++ {
			v := viper.New()
			v.SetConfigType("yaml")
			if v.ReadConfig(bytes.NewReader([]byte(strings.Join(lines[:n], "\n")))) != nil {
				bad = n - 1
				break
			}
		}
	}
	if bad < 0 {
		return fmt.Errorf("config %s: YAML syntax error: %s", displayPath(path), msg)
	}
	line := strings.TrimRight(lines[bad], "\r")
	col := len(line) - len(strings.TrimLeft(line, " \t"))
	// Show tabs as they are, so the caret lines up in a terminal too.
	caret := strings.Map(func(r rune) rune {
		if r == '\t' {
			return '\t'
		}
		return ' '
	}, line[:col]) + "^"
	return fmt.Errorf("config %s:%d: YAML syntax error: %s\n  %s\n  %s", displayPath(path), bad+1, msg, line, caret)
}
