#!/usr/bin/env node
import { main } from './cli/main.js';
import { processIo } from './cli/io.js';

// The `hellwall` executable (package.json "bin", the Docker image's entrypoint): everything is in
// src/cli/. Exit explicitly (stdout and stderr writes are synchronous on Linux, so nothing is lost):
// after `serve`, a mail delivery abandoned at shutdown may hold a socket open.
process.exit(await main(process.argv.slice(2), process.env, processIo()));
