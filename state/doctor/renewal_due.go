package doctor

import (
	"context"
	"fmt"
	"time"

	"github.com/p2pstream/p2ptls/state"
	"github.com/p2pstream/p2ptls/state/runstatus"
	"github.com/p2pstream/p2ptls/state/text"
)

// IDRenewalDue is the check that no certificate is past the point where
// it should have been renewed.
const IDRenewalDue = "mappings.renewal_due"

// renewalGraceMin is the least time a certificate may stay past its
// renewal time before doctor warns: the shipped timer runs 'cert renew'
// every 12 h with up to 1 h of random delay, so a renewal done by it can
// come 13 h after its time without anything being wrong.
const renewalGraceMin = 13 * time.Hour

// renewalGrace is how long past its renewal time a certificate of this
// lifetime may wait: 5 % of the lifetime (4.5 days of a 90-day
// certificate, 2.25 of a 45-day one), at least renewalGraceMin (a 6-day
// certificate: 13 h, which still leaves it more than 2 days).
func renewalGrace(lifetime time.Duration) time.Duration {
	return max(renewalGraceMin, lifetime/20)
}

// checkRenewalDue: every valid ACME certificate is renewed within a grace
// after its next_renewal_at (the time chosen in the ARI window, else when a
// third, for 10 days or less half, of the lifetime is left). One past it
// warns, naming the time, what renews it (serve, the timer) and the last
// error. Certificates p2ptls does not renew are mappings.expiry's warning
// as soon as they are due; an expired one is its failure.
func checkRenewalDue(ctx context.Context, e *env) Check {
	if e.cfg == nil {
		return skipped(IDRenewalDue)
	}
	var f findings
	n := 0
	var serve *runstatus.Status
	for _, info := range e.infos {
		if info.m == nil || info.NotAfter == nil || info.NotBefore == nil || info.NextRenewalAt == nil {
			continue // no certificate: mappings.coverage reports it
		}
		if info.m.Source != state.SourceACME {
			continue // p2ptls does not renew it: mappings.expiry warns once it is due
		}
		now := e.in.Now
		if !now.Before(*info.NotAfter) || now.Before(*info.NotBefore) {
			continue // expired or not valid yet: mappings.expiry fails it
		}
		n++
		due := *info.NextRenewalAt
		late := due.Add(renewalGrace(info.NotAfter.Sub(*info.NotBefore)))
		if !now.After(late) {
			continue
		}
		m := *info.m
		if serve == nil {
			if serve, _ = runstatus.Read(ctx, e.s); serve == nil {
				serve = &runstatus.Status{}
			}
		}
		why := "no attempt was recorded"
		if info.LastError != "" {
			why = "the last attempt failed: " + info.LastError
			if info.LastAttemptAt != nil {
				why = "the last attempt, on " + text.Stamp(*info.LastAttemptAt) + ", failed: " + info.LastError
			}
		} else if info.LastAttemptAt != nil {
			why = "the last attempt was on " + text.Stamp(*info.LastAttemptAt)
		}
		f.warn(acmeRenewHint(m, serve, info.LastError != ""), "mapping %s: its renewal was due on %s and has not happened (%s); the certificate expires on %s",
			m.ID, text.Stamp(due), why, text.Stamp(*info.NotAfter))
	}
	return f.check(IDRenewalDue, fmt.Sprintf("no certificate is past its renewal time (%s checked; grace: 5 %% of the lifetime, at least 13 h)", plural(n, "certificate")))
}

// acmeRenewHint says what should have renewed m and how to find out why
// it did not.
func acmeRenewHint(m state.Mapping, serve *runstatus.Status, failed bool) string {
	var h string
	if serve.ServeRunning {
		h = fmt.Sprintf("serve (pid %d) renews it by itself: look in its log for mapping %s", serve.PID, m.ID)
	} else {
		h = "serve is not running and nothing renewed it: start serve, or enable the timer ('systemctl enable --now p2ptls-renew.timer') or a cron entry that runs 'p2ptls cert renew' at least every 12 hours"
	}
	if failed {
		h += fmt.Sprintf("; fix what %s names, then 'p2ptls cert issue %s'", IDLastRenewal, m.ID)
	}
	return h
}
