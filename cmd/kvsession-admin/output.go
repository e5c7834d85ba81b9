package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/kvsession/kvsession"
	"github.com/kvsession/kvsession/admin"
)

// printer writes what the admin handler answers: a table (sessions as
// they come, aligned a screenful at a time) or JSON lines.
type printer struct {
	w    io.Writer
	json bool
	tw   *tabwriter.Writer
	rows int
}

func newPrinter(w io.Writer, asJSON bool) *printer {
	return &printer{w: w, json: asJSON}
}

// flushEvery is how many table rows are aligned together.
const flushEvery = 50

func (p *printer) session(info kvsession.SessionInfo) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(info)
	}
	if p.tw == nil {
		p.tw = tabwriter.NewWriter(p.w, 2, 8, 2, ' ', 0)
		fmt.Fprintln(p.tw, "HANDLE\tUSER\tCREATED\tLAST ACTIVE\tEXPIRES\tKEYS\tCLIENT")
	}
	client := strings.TrimSpace(info.RemoteAddr + " " + info.UserAgent)
	fmt.Fprintf(p.tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", info.Handle, orDash(info.User), stamp(info.Created),
		stamp(info.LastActive), stamp(info.Expires), info.Keys, orDash(client))
	if len(info.Values) > 0 {
		names := make([]string, 0, len(info.Values))
		for name := range info.Values {
			names = append(names, name)
		}
		sort.Strings(names)
		for _, name := range names {
			v, err := json.Marshal(info.Values[name])
			if err != nil {
				v = []byte(fmt.Sprintf("%v", info.Values[name]))
			}
			fmt.Fprintf(p.tw, "  %s = %s\t\t\t\t\t\t\n", name, v)
		}
	}
	p.rows++
	if p.rows%flushEvery == 0 {
		return p.tw.Flush()
	}
	return nil
}

// result prints the outcome of verb.
func (p *printer) result(verb string, res admin.Result) error {
	if p.json {
		return json.NewEncoder(p.w).Encode(res)
	}
	if p.tw != nil {
		if err := p.tw.Flush(); err != nil {
			return err
		}
	}
	var err error
	switch verb {
	case "count":
		_, err = fmt.Fprintf(p.w, "%d sessions\n", res.Sessions)
	case "list":
		_, err = fmt.Fprintf(p.w, "%d sessions listed\n", res.Sessions)
	case "show":
	case "destroy":
		if res.Sessions == 0 {
			_, err = fmt.Fprintln(p.w, "no live session had that handle")
		} else {
			_, err = fmt.Fprintln(p.w, "session ended")
		}
	case "destroy-user":
		_, err = fmt.Fprintf(p.w, "%d sessions ended\n", res.Sessions)
	case "purge":
		_, err = fmt.Fprintf(p.w, "%d expired sessions deleted", res.Sessions)
		if err == nil {
			switch {
			case res.StoreEntries > 0:
				_, err = fmt.Fprintf(p.w, "; the store removed %d expired entries\n", res.StoreEntries)
			case res.StoreEntries < 0:
				_, err = fmt.Fprintln(p.w, "; the store compacted its expired entries")
			default:
				_, err = fmt.Fprintln(p.w)
			}
		}
	}
	return err
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format(time.DateTime)
}
