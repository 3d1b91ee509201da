package acme

// backingOffWhy starts isDue's reason for a mapping that backs off: Renew
// reads the meta again for those verdicts only, to count the back-off
// (Report.Backoffs). TestRenewReportsBackoffs fails if the wording drifts.
const backingOffWhy = "backing off after "
