#!/usr/bin/env node
import { serve } from './cli.js';

// `npm start` runs exactly what `hellwall serve` runs.
process.exitCode = await serve(process.env);
