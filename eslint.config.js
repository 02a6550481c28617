// ESLint flat config: typescript-eslint's type-checked recommended rules (no floating promises, no misused promises…)
// and Prettier owns formatting; warnings fail `npm test` (--max-warnings 0).
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import tseslint from 'typescript-eslint';

/**
 * The import fence (docs/architecture.md): what each folder may import. `src/platform` knows nothing of the components;
 * `orgs` never imports `messages`; `messages` reaches `orgs` only through `src/orgs/index.ts`; a component's domain and
 * data access never import its entry points; nothing but the composition root (`src/deps.ts`, `src/app`) imports the app.
 * Flat config replaces a rule's options per file rather than merging them, so each folder gets its whole list here.
 */
const APP = { group: ['**/app/**', '**/deps.js', '**/main.js'], message: 'only the composition root (src/deps.ts, src/app) wires the app' };
const COMPONENTS = { group: ['**/orgs/**', '**/messages/**'], message: 'src/platform knows nothing of the components (orgs, messages)' };
const NO_MESSAGES = { group: ['**/messages/**'], message: 'orgs never imports messages' };
const ORGS_BY_INDEX = {
  group: ['**/orgs/**', '!**/orgs/index.js'],
  message: 'messages imports orgs only through src/orgs/index.ts',
};
const NO_ENTRY_POINTS = { group: ['**/entry-points/**'], message: 'domain and data access never import entry points' };
const fence = (files, ...groups) => ({ files, rules: { 'no-restricted-imports': ['error', { patterns: groups }] } });
const importFence = [
  fence(['config/**'], { group: ['**/src/**'], message: 'config is a leaf: it imports nothing of src' }),
  fence(['src/platform/**'], COMPONENTS, APP),
  fence(['src/orgs/**'], NO_MESSAGES, APP),
  fence(['src/orgs/domain/**', 'src/orgs/data-access/**'], NO_MESSAGES, APP, NO_ENTRY_POINTS),
  fence(['src/messages/**'], ORGS_BY_INDEX, APP),
  fence(['src/messages/domain/**', 'src/messages/data-access/**', 'src/messages/gateway/**'], ORGS_BY_INDEX, APP, NO_ENTRY_POINTS),
];

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'docs/**', 'ops/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: { allowDefaultProject: ['eslint.config.js'] }, tsconfigRootDir: import.meta.dirname },
      globals: {
        process: 'readonly',
        console: 'readonly',
        URL: 'readonly',
        performance: 'readonly',
        setTimeout: 'readonly',
        clearTimeout: 'readonly',
        setInterval: 'readonly',
        clearInterval: 'readonly',
        fetch: 'readonly',
        Buffer: 'readonly',
        NodeJS: 'readonly',
      },
    },
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_' },
      ],
      'no-control-regex': 'off',
    },
  },
  {
    // Tests and benchmarks read arbitrary JSON answers (`any`) and implement async interfaces with fakes.
    files: ['test/**', 'bench/**'],
    rules: {
      '@typescript-eslint/no-unsafe-assignment': 'off',
      '@typescript-eslint/no-unsafe-member-access': 'off',
      '@typescript-eslint/no-unsafe-argument': 'off',
      '@typescript-eslint/no-unsafe-return': 'off',
      '@typescript-eslint/no-unsafe-call': 'off',
      '@typescript-eslint/require-await': 'off',
    },
  },
  ...importFence,
  { files: ['eslint.config.js'], ...tseslint.configs.disableTypeChecked },
  prettier,
);
