package commands

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	statemgmt "github.com/p2pstream/p2ptls/state/management"
)

const (
	flgOverlap    = "overlap"
	flgKeepOldKey = "keep-old-key"
)

func caRotateCommand() *cli.Command {
	flags := func(more ...cli.Flag) []cli.Flag { return append(append(namesFlags(), modeFlags()...), more...) }
	return &cli.Command{
		Name:  "rotate",
		Usage: "replace the management CA in stages, without breaking an agent",
		Description: "start makes the next CA; /ca.crt, 'ca export' and 'agent env' then hand out both CAs\n" +
			"(the current one first). Give every agent that bundle, then switch: the server certificate\n" +
			"comes from the next CA. finish retires the old CA. Until finish, an agent trusting the\n" +
			"old CA, the new one or both verifies management TLS: the server sends a cross-certificate.\n" +
			"abort goes back from started or switched. Each step is one change of the state, and\n" +
			"running it again changes nothing; 'p2ptls serve' picks every step up within seconds." + examples(
			"p2ptls ca rotate start --overlap 30d",
			"p2ptls ca rotate status",
			"p2ptls ca export --out /etc/p2pstream/management-ca.pem",
			"p2ptls ca rotate switch",
			"p2ptls ca rotate finish"),
		Subcommands: []*cli.Command{
			leaf(&cli.Command{
				Name:  "start",
				Usage: "create the next CA and its cross-certificates; agents are handed both CAs from now on",
				Description: "The overlap (default 30 days) is the rotation's deadline, by which every agent\n" +
					"should have the bundle; 'ca rotate status' shows it. Running start again changes nothing." + examples(
					"p2ptls ca rotate start",
					"p2ptls ca rotate start --overlap 14d --output json"),
				Flags: flags(&cli.StringFlag{Name: flgOverlap, Value: "30d",
					Usage: "how long agents get to take the bundle: the rotation's deadline (e.g. 30d, 720h)"}),
			}, caRotateStartAction),
			leaf(&cli.Command{
				Name:  "switch",
				Usage: "serve a certificate from the next CA, with the cross-certificate for agents that trust only the old one",
				Description: "A current CA made before p2ptls could rotate allows no intermediate certificate:\n" +
					"then an agent trusting only it cannot verify after switch, and switch needs\n" +
					"--" + statemgmt.FlagAgentsUpdated + " once every agent has the bundle." + examples(
					"p2ptls ca rotate switch",
					"p2ptls ca rotate switch --"+statemgmt.FlagAgentsUpdated),
				Flags: flags(&cli.BoolFlag{Name: statemgmt.FlagAgentsUpdated,
					Usage: "switch although the current CA predates rotation: every agent has the bundle or the next CA"}),
			}, caRotateSwitchAction),
			leaf(&cli.Command{
				Name:  "finish",
				Usage: "retire the old CA (certs/management/retired/); the new CA alone is served and handed out",
				Description: examples(
					"p2ptls ca rotate finish",
					"p2ptls ca rotate finish --keep-old-key"),
				Flags: flags(&cli.BoolFlag{Name: flgKeepOldKey, Usage: "keep the old CA's key with its certificate under retired/"}),
			}, caRotateFinishAction),
			leaf(&cli.Command{
				Name:  "abort",
				Usage: "go back to the current CA alone, from started or switched",
				Description: "The next CA's certificate is kept under certs/management/retired/ for the record;\n" +
					"its key is deleted. An agent given only the next CA needs the current one again." + examples(
					"p2ptls ca rotate abort",
					"p2ptls ca rotate abort --quiet"),
				Flags: flags(),
			}, caRotateAbortAction),
			leaf(&cli.Command{
				Name:  "status",
				Usage: "show the stage, both CAs, the deadline and what each kind of agent must do",
				Description: examples(
					"p2ptls ca rotate status",
					"p2ptls ca rotate status --output json | jq -r .stage"),
				Flags: flags(),
			}, caRotateStatusAction),
		},
	}
}

// rotateStep is what each step's action does around the step itself.
func rotateStep(ctx context.Context, g *Globals, c *cli.Context, step func(statemgmt.Settings) (*statemgmt.Step, error), did, same string) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	st, err := step(set)
	if err != nil {
		return err
	}
	headline := did
	if !st.Changed {
		headline = same + "; nothing changed"
	}
	return printRotation(ctx, g, set, headline, st.Changed)
}

func caRotateStartAction(ctx context.Context, g *Globals, c *cli.Context) error {
	overlap, err := statemgmt.ParseOverlap(c.String(flgOverlap))
	if err != nil {
		return err
	}
	return rotateStep(ctx, g, c, func(set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.StartRotation(ctx, g.Store(), set, overlap, time.Now())
	}, "started the management CA rotation: give every agent the bundle ('p2ptls agent env' or 'p2ptls ca export'), then run 'p2ptls ca rotate switch'",
		"the management CA rotation is already started")
}

func caRotateSwitchAction(ctx context.Context, g *Globals, c *cli.Context) error {
	return rotateStep(ctx, g, c, func(set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.SwitchRotation(ctx, g.Store(), set, c.Bool(statemgmt.FlagAgentsUpdated), time.Now())
	}, "switched: the management server certificate is from the next CA; once every agent has the bundle or the next CA, run 'p2ptls ca rotate finish'",
		"the management CA rotation is already switched")
}

func caRotateFinishAction(ctx context.Context, g *Globals, c *cli.Context) error {
	return rotateStep(ctx, g, c, func(set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.FinishRotation(ctx, g.Store(), set, c.Bool(flgKeepOldKey), time.Now())
	}, "finished: the new CA is the management CA; agents that trust only the old one must be given it ('p2ptls agent env')",
		"the management CA rotation is already finished")
}

func caRotateAbortAction(ctx context.Context, g *Globals, c *cli.Context) error {
	return rotateStep(ctx, g, c, func(set statemgmt.Settings) (*statemgmt.Step, error) {
		return statemgmt.AbortRotation(ctx, g.Store(), set, time.Now())
	}, "aborted: the current CA alone is served and handed out; an agent given only the next CA needs the current one again ('p2ptls agent env')",
		"the management CA rotation is already aborted")
}

func caRotateStatusAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	set, err := managementSettings(c)
	if err != nil {
		return err
	}
	return printRotation(ctx, g, set, "", false)
}

// rotationDoc is a step's JSON document: the status after it, and
// whether the step changed anything.
type rotationDoc struct {
	*statemgmt.RotationInfo
	Changed bool `json:"changed"`
}

// printRotation prints the status after an optional headline.
func printRotation(ctx context.Context, g *Globals, set statemgmt.Settings, headline string, changed bool) error {
	info, err := statemgmt.RotationStatus(ctx, g.Store(), set)
	if err != nil {
		return err
	}
	if g.JSON() {
		if headline == "" {
			return printJSON(g.Stdout, info)
		}
		return printJSON(g.Stdout, rotationDoc{info, changed})
	}
	if headline != "" {
		g.Infof("%s", headline)
		if g.Quiet {
			return nil
		}
	}
	stamp := func(t *time.Time) string {
		if t == nil {
			return "-"
		}
		return t.Format(time.RFC3339)
	}
	fields := [][2]string{{"stage", info.Stage},
		{"current CA", info.Current.FingerprintSHA256},
		{"current CA expires", info.Current.NotAfter.Format(time.RFC3339)}}
	if n := info.Next; n != nil {
		deadline := stamp(info.Deadline)
		if info.Overdue {
			deadline += " (passed)"
		}
		fields = append(fields, [2]string{"next CA", n.FingerprintSHA256},
			[2]string{"next CA expires", n.NotAfter.Format(time.RFC3339)},
			[2]string{"started", stamp(info.Started)},
			[2]string{"switched", stamp(info.Switch)},
			[2]string{"overlap deadline", deadline})
	}
	fields = append(fields, [2]string{"served by", info.ServedBy}, [2]string{"next step", info.NextStep})
	if l := info.Last; l != nil {
		fields = append(fields, [2]string{"last rotation", l.Outcome + " " + l.EndedAt.Format(time.RFC3339) + " (" + orDash(l.Retired) + ")"})
	}
	if err := printFields(g.Stdout, fields); err != nil {
		return err
	}
	if len(info.Agents) == 0 {
		return nil
	}
	rows := make([][]string, len(info.Agents))
	yes := map[bool]string{true: "yes", false: "NO"}
	for i, a := range info.Agents {
		rows[i] = []string{a.Kind, yes[a.VerifiesNow], yes[a.SurvivesFinish], a.Action}
	}
	g.Infof("")
	return printTable(g.Stdout, []string{"AGENT TRUSTS", "VERIFIES NOW", "AFTER FINISH", "TO DO"}, rows)
}
