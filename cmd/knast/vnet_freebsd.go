package main

import (
	"os"

	"github.com/knast/knast/internal/network"
)

func serveJailSockets(jid int, conn *os.File) error { return network.ServeJailSockets(jid, conn) }
