import { AspError } from '../core/asp-error.js';

/** A number a flag takes (`--cpus 1.5`, `--pids 512`): bad input, one line with an example, when it is not one. */
export function numberFlag(flag: string, text: string, integer: boolean): number {
  const value = Number(text);
  if (text.trim() === '' || !Number.isFinite(value) || (integer && !Number.isInteger(value))) {
    throw new AspError('BAD_INPUT', `${flag} "${text}" is not ${integer ? 'a whole number' : 'a number'}`, `pass e.g. ${flag} ${integer ? '512' : '1.5'}`);
  }
  return value;
}

/** A count a flag takes, within its bounds (`--concurrency`, `--retries`, `--size`). */
export function wholeNumber(flag: string, text: string, min: number, max: number): number {
  const value = Number(text);
  if (!/^\d+$/.test(text.trim()) || value < min || value > max) {
    throw new AspError('BAD_INPUT', `${flag} "${text}" is not a whole number from ${min} to ${max}`, `pass e.g. ${flag} ${min + 1}`);
  }
  return value;
}
