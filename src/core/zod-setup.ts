/**
 * Zod without its JIT, for every command (cli-context.ts imports this first). Zod compiles an object schema's parser
 * with `new Function` on its first parse, which pays off after many parses of one schema; a run parses most of its
 * schemas a few times, and the compiling cost `asp run` about 25 ms of CPU (measured A/B on 12 runs each). Parsing
 * is the same either way, only slower per call without it.
 */
import { config } from 'zod';

config({ jitless: true });
