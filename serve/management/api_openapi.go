package management

import (
	_ "embed"
	"net/http"
)

// openAPIDoc is the OpenAPI 3.1 document of the API, generated from the
// handlers' types (see openapi_gen_test.go) and committed.
//
//go:embed openapi.json
var openAPIDoc []byte

// showOpenAPI: GET /api/v1/openapi.json. Decision: behind the admin token
// like the rest of /api/v1: the document holds no secret, but a client
// that can use the API has the token anyway, and an unauthenticated route
// under /api/v1 would be the one exception to a simple rule.
func (a *api) showOpenAPI(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(openAPIDoc)
}
