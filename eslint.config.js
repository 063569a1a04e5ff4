// ESLint here catches bugs, not style: prettier owns the layout, and no style rule is on. The rules are chosen one by
// one rather than taken from `strict-type-checked`, which on this code is mostly noise (void-expression shapes,
// `await` in loops that are sequential on purpose, non-null assertions after a check the compiler cannot follow).
//
// - Promises: a floating or misused promise is a rejection nobody handles (an unhandled rejection ends the process);
//   awaiting a non-promise, and returning a promise from inside try without awaiting it (catch and finally miss its
//   rejection), are the same mistake seen from the other side.
// - Casts: `x as T` on data from outside (files, the sandbox, the network, a model) is a check that never ran; such
//   data goes through a zod schema or a type guard. `no-unsafe-type-assertion` reports casts that narrow; the `any`
//   family reports what JSON.parse returns flowing on unchecked, which needs no cast at all. A cast that is checked
//   by other means gets a targeted `eslint-disable-next-line ... -- reason`.
// - Errors: only Error objects are thrown or rejected, so every handler can read `message` and `cause`.
// - Control flow: a switch over a union without a default must name every case; no case falls through; `==` only
//   against null; no `return` in `finally`, no `?.` result used where undefined throws, no condition that is
//   constant or compares a value to itself.
// - Unused variables and arguments (after the last used one; `_` marks one that is unused on purpose).
import { defineConfig } from 'eslint/config';
import tseslint from 'typescript-eslint';

const bugs = {
  'no-fallthrough': 'error',
  eqeqeq: ['error', 'always', { null: 'ignore' }],
  'no-unsafe-finally': 'error',
  'no-unsafe-optional-chaining': 'error',
  'no-async-promise-executor': 'error',
  'no-constant-binary-expression': 'error',
  'no-self-compare': 'error',
  'no-cond-assign': 'error',
  'no-dupe-else-if': 'error',
  'no-unreachable-loop': 'error',
  'use-isnan': 'error',
};

const unused = { args: 'after-used', argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_', ignoreRestSiblings: true };

/** What `any` can do unchecked: the JSON.parse result passed, assigned, called, read or returned as if it were typed. */
const anyFlow = {
  '@typescript-eslint/no-unsafe-argument': 'error',
  '@typescript-eslint/no-unsafe-assignment': 'error',
  '@typescript-eslint/no-unsafe-call': 'error',
  '@typescript-eslint/no-unsafe-member-access': 'error',
  '@typescript-eslint/no-unsafe-return': 'error',
};

export default defineConfig(
  {
    // examples/ is a sample target repository and a recorded cassette: data, not this project's code.
    ignores: ['dist/**', 'node_modules/**', 'coverage/**', 'examples/**', 'vitest.config.ts'],
  },
  {
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  {
    // The build and demo scripts: plain JavaScript, no type information.
    files: ['**/*.js', '**/*.mjs'],
    rules: { ...bugs, 'no-unused-vars': ['error', unused] },
  },
  {
    files: ['**/*.ts', '**/*.mts'],
    languageOptions: {
      parser: tseslint.parser,
      // tsconfig.test.json is the one program that holds src, sandbox, bench and test.
      parserOptions: { project: ['./tsconfig.test.json'], tsconfigRootDir: import.meta.dirname },
    },
    plugins: { '@typescript-eslint': tseslint.plugin },
    rules: {
      ...bugs,
      '@typescript-eslint/no-floating-promises': 'error',
      '@typescript-eslint/no-misused-promises': 'error',
      '@typescript-eslint/await-thenable': 'error',
      '@typescript-eslint/return-await': ['error', 'error-handling-correctness-only'],
      '@typescript-eslint/no-unsafe-type-assertion': 'error',
      '@typescript-eslint/no-unnecessary-type-assertion': 'error',
      ...anyFlow,
      // A `default:` is a decision to ignore the other members; a switch without one must name them all.
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/only-throw-error': 'error',
      // Passing on a reason that is already `unknown` is a rethrow, which only-throw-error allows too.
      '@typescript-eslint/prefer-promise-reject-errors': ['error', { allowThrowingUnknown: true }],
      '@typescript-eslint/no-unused-vars': ['error', unused],
    },
  },
  {
    // Tests read back JSON the code under test wrote (results, traces, reports, fixtures) and cast it to the shape
    // they then assert on: the expectations are the check, so casts and `any` are allowed there. Promise rules stay
    // on: a floating promise in a test is an assertion that never runs.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unsafe-type-assertion': 'off',
      ...Object.fromEntries(Object.keys(anyFlow).map((rule) => [rule, 'off'])),
    },
  },
);
