// Lint rules that catch real bugs (STYLE.md, after medplum's eslint-config), type-aware, over the
// gateway, its tests and its benchmarks.
import boundaries from 'eslint-plugin-boundaries';
import tseslint from 'typescript-eslint';

/**
 * The layers of src/, lowest first (docs/architecture.md): each may import only the ones before
 * it. `app` is the composition root, the CLI and the public API; `demo` is the embedded demo upstream, which knows
 * nothing of the gateway.
 */
const LAYERS = [
  'errors',
  'lib',
  'logging',
  'telemetry',
  'json',
  'fhir',
  'config',
  'content',
  'storage',
  'signed',
  'rewrite',
  'security',
  'upstream',
  'audit',
  'binary',
  'graphql',
  'http',
  'admin',
  'app',
];
const layerElements = [...LAYERS.map((l) => ({ type: l, pattern: `src/${l}` })), { type: 'demo', pattern: 'src/demo' }];
const layerPolicies = LAYERS.map((l, i) => ({
  from: { element: { type: l } },
  allow: { to: { element: { types: { anyOf: [...LAYERS.slice(0, i), ...(l === 'app' ? ['demo'] : [])] } } } },
}));

const typed = {
  '@typescript-eslint/no-floating-promises': 'error',
  '@typescript-eslint/no-misused-promises': 'error',
  '@typescript-eslint/consistent-type-imports': 'error',
  // A `default` that refuses (fail closed) is deliberate and counts as exhaustive.
  '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
  '@typescript-eslint/await-thenable': 'error',
  '@typescript-eslint/no-unnecessary-type-assertion': 'error',
};

export default tseslint.config(
  { ignores: ['dist/**', '.build/**', 'node_modules/**', 'coverage/**', '.tap/**'] },
  {
    files: ['src/**/*.ts', 'test/**/*.ts', 'bench/**/*.ts'],
    extends: [tseslint.configs.base],
    languageOptions: { parserOptions: { project: './tsconfig.test.json', tsconfigRootDir: import.meta.dirname } },
    rules: typed,
  },
  {
    // tap runs and awaits every test it is given: a top-level test(...) or t.test(...) is not a floating promise.
    files: ['test/**/*.ts'],
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        { allowForKnownSafePromises: [{ from: 'package', name: 'PromiseWithSubtest', package: '@tapjs/core' }] },
      ],
    },
  },
  {
    // Layers import downwards only: an upward or sideways import fails the build.
    files: ['src/**/*.ts'],
    plugins: { boundaries },
    settings: {
      'import/resolver': { typescript: { project: './tsconfig.json' } },
      'boundaries/elements': layerElements,
    },
    rules: {
      'boundaries/dependencies': ['error', { default: 'disallow', policies: layerPolicies }],
      'boundaries/no-unknown-files': 'error',
    },
  },
  {
    files: ['**/*.mjs', '**/*.js'],
    extends: [tseslint.configs.base],
    rules: { 'no-unused-vars': 'error', 'no-undef': 'off' },
  },
);
