package commands

import (
	"context"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/p2pstream/p2ptls/state/admintoken"
)

func adminCommand() *cli.Command {
	return &cli.Command{
		Name:  "admin",
		Usage: "administration of the management API",
		Subcommands: []*cli.Command{{
			Name:  "token",
			Usage: "admin tokens for the management API (Authorization: Bearer …)",
			Subcommands: []*cli.Command{
				leaf(&cli.Command{
					Name: "create", Usage: "create an admin token; it is printed once and stored only as a hash", ArgsUsage: "NAME",
					Description: examples(
						"p2ptls admin token create ops",
						"p2ptls admin token create ci --output json | jq -r .token > ci.token"),
				}, adminTokenCreateAction),
				leaf(&cli.Command{Name: "list", Usage: "list admin token names"}, adminTokenListAction),
				leaf(&cli.Command{Name: "revoke", Usage: "revoke an admin token; a running serve refuses it at once", ArgsUsage: "NAME",
					Description: examples(
						"p2ptls admin token revoke ci",
						"p2ptls admin token revoke ci --quiet")}, adminTokenRevokeAction),
			},
		}},
	}
}

func adminTokenCreateAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	token, err := admintoken.Create(ctx, g.Store(), name, time.Now())
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, struct {
			Name  string `json:"name"`
			Token string `json:"token"`
		}{name, token})
	}
	g.Infof("created admin token %s; it is shown only now, store it safely:", name)
	_, err = g.Stdout.Write([]byte(token + "\n"))
	return err
}

func adminTokenListAction(ctx context.Context, g *Globals, c *cli.Context) error {
	if err := noArgs(c); err != nil {
		return err
	}
	list, err := admintoken.List(ctx, g.Store())
	if err != nil {
		return err
	}
	if g.JSON() {
		return printJSON(g.Stdout, list)
	}
	rows := make([][]string, len(list))
	for i, t := range list {
		rows[i] = []string{t.Name, t.CreatedAt.Format(time.RFC3339)}
	}
	return printTable(g.Stdout, []string{"NAME", "CREATED"}, rows)
}

func adminTokenRevokeAction(ctx context.Context, g *Globals, c *cli.Context) error {
	name, err := oneArg(c, "NAME")
	if err != nil {
		return err
	}
	if err := admintoken.Revoke(ctx, g.Store(), name); err != nil {
		return err
	}
	// Every change prints one JSON document with --output json.
	return g.Done(struct {
		Name string `json:"name"`
	}{name}, "revoked admin token %s", name)
}
