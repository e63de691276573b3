#!/usr/bin/env node
import { serve } from './serve.js';

// `npm start` runs exactly what `hellwall serve` runs. Exit explicitly once it returns: a mail
// delivery abandoned at shutdown may still hold a socket that would keep the process alive.
process.exit(await serve(process.env));
