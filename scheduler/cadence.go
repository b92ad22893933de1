package scheduler

import (
	"errors"
	"fmt"
	"hash/fnv"
	"strings"
	"time"
	_ "time/tzdata" // CRON_TZ= works on hosts (and images) without a zoneinfo database

	"github.com/robfig/cron/v3"

	"github.com/patrol-dev/patrol/queue"
)

// DSTRule is how a cron schedule's wall-clock times meet daylight saving
// changes, as ISC cron does it. `patrol schedule describe` prints it.
const DSTRule = "a time in a skipped hour (spring forward) runs when the gap ends; " +
	"a time in a repeated hour (fall back) runs once, at its first occurrence"

// Cadence is when a schedule's ticks are: a cron expression in a time zone
// (UTC unless CRON_TZ= names one), or a fixed interval whose ticks are its
// multiples since the Unix epoch, so every leader computes the same ticks.
// robfig/cron parses the expression; which instants it names, across
// daylight saving changes, is decided here (DSTRule).
type Cadence struct {
	spec  *cron.SpecSchedule // nil for a fixed interval
	every time.Duration
}

var cronParser = cron.NewParser(cron.SecondOptional | cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCadence reads a schedule's cadence: expr (cron) or every, exactly
// one of them set. Errors say what to write instead.
func ParseCadence(expr string, every time.Duration) (Cadence, error) {
	expr = strings.TrimSpace(expr)
	switch {
	case expr == "" && every == 0:
		return Cadence{}, errors.New("no cadence: pass --cron (e.g. --cron '0 6 * * *') or --every (e.g. --every 5m)")
	case expr != "" && every != 0:
		return Cadence{}, errors.New("both --cron and --every given: pass one of them")
	case every != 0:
		if every < time.Second || every%time.Second != 0 {
			return Cadence{}, fmt.Errorf("--every %s: use whole seconds, at least 1s (e.g. --every 30s)", every)
		}
		return Cadence{every: every}, nil
	}
	hasTZ := strings.HasPrefix(expr, "CRON_TZ=") || strings.HasPrefix(expr, "TZ=")
	if hasTZ && !strings.Contains(expr, " ") {
		return Cadence{}, fmt.Errorf("cron %q: a time zone needs a schedule after it, e.g. 'CRON_TZ=Europe/Berlin 0 6 * * *'", expr)
	}
	sched, err := cronParser.Parse(expr)
	if err != nil {
		return Cadence{}, fmt.Errorf("cron %q: %v; write 5 fields (minute hour day-of-month month day-of-week, e.g. '0 6 * * *'), "+
			"6 with seconds first, or @hourly/@daily/@weekly/@monthly/@every 5m, optionally after CRON_TZ=Area/City", expr, err)
	}
	switch s := sched.(type) {
	case *cron.SpecSchedule:
		if !hasTZ {
			s.Location = time.UTC // never the leader's local zone: every leader must agree
		}
		return Cadence{spec: s}, nil
	case cron.ConstantDelaySchedule:
		if s.Delay < time.Second {
			return Cadence{}, fmt.Errorf("cron %q: @every needs at least 1s", expr)
		}
		return Cadence{every: s.Delay}, nil
	}
	return Cadence{}, fmt.Errorf("cron %q: unsupported schedule", expr)
}

// Location is the zone a cron cadence is read in (UTC for an interval).
func (c Cadence) Location() *time.Location {
	if c.spec == nil {
		return time.UTC
	}
	return c.spec.Location
}

// Every is the fixed interval (0 for a cron cadence).
func (c Cadence) Every() time.Duration { return c.every }

// horizon is how far ahead Next looks: a cron expression such as Feb 29
// on a Monday matches only every few years.
const horizon = 8 * 366

// Next returns the first tick strictly after t, or the zero time if there
// is none within eight years.
func (c Cadence) Next(t time.Time) time.Time {
	next, _ := c.next(t)
	return next
}

// next is Next and, when DSTRule moved the tick, the wall-clock time the
// expression named.
func (c Cadence) next(after time.Time) (time.Time, string) {
	if c.spec == nil {
		sec := int64(c.every / time.Second)
		u := after.Unix()
		n := u / sec
		if u < 0 && u%sec != 0 {
			n--
		}
		return time.Unix((n+1)*sec, 0).UTC(), ""
	}
	s, loc := c.spec, c.spec.Location
	aw := after.In(loc)
	naiveAfter := wallOf(aw)
	// A wall time more than 3 hours before after's cannot land after it:
	// no zone's offset changes by that much.
	floor := naiveAfter.Add(-3 * time.Hour)
	day := time.Date(aw.Year(), aw.Month(), aw.Day()-1, 0, 0, 0, 0, time.UTC)
	for range horizon {
		if s.Month&(1<<uint(day.Month())) != 0 && dayMatches(s, day) {
			for h := range 24 {
				if s.Hour&(1<<uint(h)) == 0 || day.Add(time.Duration(h+1)*time.Hour).Before(floor) {
					continue
				}
				for m := range 60 {
					if s.Minute&(1<<uint(m)) == 0 || day.Add(time.Duration(h)*time.Hour+time.Duration(m+1)*time.Minute).Before(floor) {
						continue
					}
					for sec := range 60 {
						if s.Second&(1<<uint(sec)) == 0 {
							continue
						}
						wall := day.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second)
						at, moved := resolve(wall, loc)
						if at.After(after) {
							note := ""
							if moved {
								note = wall.Format("15:04:05")
							}
							return at, note
						}
					}
				}
			}
		}
		day = day.AddDate(0, 0, 1)
	}
	return time.Time{}, ""
}

const starBit = 1 << 63

// dayMatches is cron's day rule: with day-of-month and day-of-week both
// restricted, either may match; otherwise both must.
func dayMatches(s *cron.SpecSchedule, day time.Time) bool {
	dom := s.Dom&(1<<uint(day.Day())) != 0
	dow := s.Dow&(1<<uint(day.Weekday())) != 0
	if s.Dom&starBit != 0 || s.Dow&starBit != 0 {
		return dom && dow
	}
	return dom || dow
}

// wallOf is t's wall clock in its zone, as a UTC time: wall times compare
// as instants do.
func wallOf(t time.Time) time.Time {
	return time.Date(t.Year(), t.Month(), t.Day(), t.Hour(), t.Minute(), t.Second(), t.Nanosecond(), time.UTC)
}

// resolve returns the instant a wall-clock time in loc stands for, by
// DSTRule: the earliest instant showing that wall time, or, when none does
// (a spring-forward gap), the instant the gap ends. moved reports the
// latter.
func resolve(wall time.Time, loc *time.Location) (at time.Time, moved bool) {
	t0 := time.Date(wall.Year(), wall.Month(), wall.Day(), wall.Hour(), wall.Minute(), wall.Second(), 0, loc)
	_, off := t0.Zone()
	_, before := t0.Add(-3 * time.Hour).Zone()
	_, after := t0.Add(3 * time.Hour).Zone()
	if before == off && after == off && wallOf(t0).Equal(wall) {
		return t0, false // no change of offset near: the common case
	}
	// Every instant that may show wall: wall minus each offset in force
	// near it.
	var cands []time.Time
	for k := -4; k <= 4; k++ {
		_, o := t0.Add(time.Duration(k) * time.Hour).Zone()
		cands = append(cands, wall.Add(-time.Duration(o)*time.Second))
	}
	var best, lo, hi time.Time
	for _, c := range cands {
		if wallOf(c.In(loc)).Equal(wall) && (best.IsZero() || c.Before(best)) {
			best = c
		}
		if lo.IsZero() || c.Before(lo) {
			lo = c
		}
		if hi.IsZero() || c.After(hi) {
			hi = c
		}
	}
	if !best.IsZero() {
		return best.In(loc), false
	}
	// A gap: the first instant whose wall clock is past wall.
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
		if wallOf(mid.In(loc)).After(wall) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi.In(loc), true
}

// Tick is one upcoming tick, for `describe`.
type Tick struct {
	At time.Time `json:"at"`
	// Moved is the wall-clock time the expression named when DSTRule
	// moved the tick (a skipped hour), else "".
	Moved string `json:"moved_from,omitempty"`
}

// NextTicks lists the n ticks after t.
func (c Cadence) NextTicks(t time.Time, n int) []Tick {
	var out []Tick
	for len(out) < n {
		at, moved := c.next(t)
		if at.IsZero() {
			break
		}
		out = append(out, Tick{At: at, Moved: moved})
		t = at
	}
	return out
}

// JitterOf is how long after tick a schedule's run starts: a fraction of
// jitter fixed by the schedule's name and the tick, so that every leader
// (and a retry after a failover) picks the same time.
func JitterOf(name string, tick time.Time, jitter time.Duration) time.Duration {
	if jitter <= 0 {
		return 0
	}
	h := fnv.New64a()
	fmt.Fprintf(h, "%s/%d", name, tick.Unix())
	return time.Duration(h.Sum64() % uint64(jitter))
}

// NextRun is when a schedule's next tick not yet dealt with is due, jitter
// included: the first tick after its last one dealt with and its start
// (zero if its cadence does not parse or has no tick ahead). In the past,
// the tick is late: no leader has fired it.
func NextRun(spec queue.ScheduleSpec, st queue.ScheduleState) time.Time {
	cad, err := ParseCadence(spec.Cron, spec.Every())
	if err != nil {
		return time.Time{}
	}
	after := st.LastTick
	if spec.Since.After(after) {
		after = spec.Since
	}
	t := cad.Next(after)
	if t.IsZero() {
		return t
	}
	return t.Add(JitterOf(spec.Name, t, spec.Jitter())).UTC()
}
