package doctor

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/p2pstream/p2ptls/state"
)

// IDRestoreStaging is the check of what interrupted restores left beside
// the state directory.
const IDRestoreStaging = "state.restore_staging"

// checkRestoreStaging: a restore killed while extracting leaves
// CONFIG_DIR.restore-tmp-*, a copy of every private key of the archive,
// which nothing uses; one killed just after the swap leaves the previous
// state at such a name. Both warn with the fix; the next restore removes
// the first kind by itself. A restore running now is fine.
func checkRestoreStaging(_ context.Context, e *env) Check {
	if e.local == nil {
		return notApplicable(IDRestoreStaging, "restore stages beside a state directory")
	}
	target := e.root
	if target == "" {
		// A restore into a directory that does not exist yet stages beside
		// the path as given.
		target = filepath.Clean(e.local.Root())
	}
	var f findings
	active := 0
	var kept []string
	for _, l := range state.RestoreLeftovers(target) {
		switch l.Kind {
		case state.LeftoverActive:
			active++
		case state.LeftoverKept:
			// Asked for (--force into a mount point): named, not warned.
			kept = append(kept, l.Path)
		case state.LeftoverSwapping:
			f.warn("run any p2ptls command (p2ptls status) or start serve: it finishes the restore",
				"%s belongs to a restore into a mount point that was interrupted while swapping the state in", l.Path)
		case state.LeftoverStaging:
			f.warn("remove it: rm -rf "+l.Path+" (the next restore also removes it)",
				"%s is left by a restore that was interrupted while extracting: a copy of the backup's private keys that nothing uses", l.Path)
		default:
			f.warn("look into it: if "+target+" holds the state you want, remove it (rm -rf "+l.Path+"), else keep it as a pre-restore copy (mv "+l.Path+" "+l.KeepAs(target)+")",
				"%s is left by an interrupted restore and may hold the state from before it", l.Path)
		}
	}
	msg := "no restore left a staging directory beside " + target
	if active > 0 {
		msg = "a restore is extracting beside " + target + " right now; nothing is left from interrupted ones"
	}
	if len(kept) > 0 {
		msg += fmt.Sprintf("; the state from before a restore is kept in %s (remove it when no longer needed: rm -rf)", strings.Join(kept, ", "))
	}
	return f.check(IDRestoreStaging, msg)
}
