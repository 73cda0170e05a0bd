package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"
	"golang.org/x/term"

	"github.com/knast/knast/internal/image"
)

func loginCmd() command {
	return command{summary: "store credentials for a registry (checked against it first)", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		user := fs.StringP("username", "u", "", "user name")
		pass := fs.StringP("password", "p", "", "password (visible in the process list; prefer --password-stdin)")
		passStdin := fs.Bool("password-stdin", false, "read the password from stdin")
		authFile := fs.String("authfile", "", "auth file to write (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json)")
		insecure := tlsVerify(fs)
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("login", args, 1, "a registry"); err != nil {
				return err
			}
			if *pass != "" && *passStdin {
				return errors.New("login: --password and --password-stdin are mutually exclusive")
			}
			password := *pass
			switch {
			case *passStdin:
				line, err := bufio.NewReader(os.Stdin).ReadString('\n')
				if err != nil && line == "" {
					return fmt.Errorf("login: read password from stdin: %w", err)
				}
				password = strings.TrimRight(line, "\r\n")
			case password == "" && term.IsTerminal(int(os.Stdin.Fd())):
				fmt.Fprint(a.stderr, "Password: ")
				b, err := term.ReadPassword(int(os.Stdin.Fd()))
				fmt.Fprintln(a.stderr)
				if err != nil {
					return fmt.Errorf("login: read password: %w", err)
				}
				password = string(b)
			}
			if *user == "" || password == "" {
				return errors.New("login: needs --username and a password (--password, --password-stdin or a terminal prompt)")
			}
			path, err := image.Login(ctx, args[0], *user, password, image.LoginOptions{Insecure: insecure(), AuthFile: *authFile})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Login Succeeded (credentials in %s)\n", path)
			return nil
		}
	}}
}

func logoutCmd() command {
	return command{summary: "remove stored credentials for a registry", flags: func(fs *pflag.FlagSet) func(context.Context, *app, []string) error {
		authFile := fs.String("authfile", "", "auth file (default: $REGISTRY_AUTH_FILE, else ~/.docker/config.json)")
		return func(ctx context.Context, a *app, args []string) error {
			if err := needArgs("logout", args, 1, "a registry"); err != nil {
				return err
			}
			path, err := image.Logout(args[0], image.LoginOptions{AuthFile: *authFile})
			if err != nil {
				return err
			}
			fmt.Fprintf(a.stdout, "Removed login credentials for %s from %s\n", args[0], path)
			return nil
		}
	}}
}
