package management

import (
	"fmt"
	"net/http"
	"time"

	"github.com/p2pstream/p2ptls/state/mappings"
)

// certificatePEM: GET /api/v1/certificates/{id}/pem, the mapping's
// certificate chain as a PEM file to download (the UI's Details dialog),
// leaf first, never the key. 404 as GET /api/v1/certificates/{id}. The
// file name is the id of the mapping found, which validation holds to
// [a-z0-9_-]: nothing to quote in the header.
func (a *api) certificatePEM(w http.ResponseWriter, r *http.Request) {
	cfg, err := a.configs.Load(r.Context())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	info, chain, err := mappings.ChainPEM(r.Context(), a.o.Store, cfg, r.PathValue("id"), time.Now())
	if err != nil {
		a.writeError(w, r, err)
		return
	}
	if chain == nil {
		a.writeError(w, r, noCertificate(info))
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/x-pem-file")
	h.Set("Content-Disposition", `attachment; filename="`+info.ID+`.pem"`)
	h.Set("Cache-Control", "no-store")
	_, _ = w.Write(chain)
}

// noCertificate is the 404 of a mapping without a usable certificate
// (ACME pending or failed, a missing file), with the reason.
func noCertificate(info mappings.Info) error {
	hint := info.LastError
	if hint == "" {
		hint = "issue it with POST /api/v1/mappings/" + info.ID + "/issue"
	}
	return &httpError{status: http.StatusNotFound,
		msg: fmt.Sprintf("mapping %q has no certificate (status %s)", info.ID, info.Status), hint: hint}
}
