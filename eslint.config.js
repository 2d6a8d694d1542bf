// `npm run lint`: ESLint's and typescript-eslint's recommended rules (not the type-aware ones)
// over the driver, tests, examples and the plain-JS entry points.
import js from '@eslint/js'
import { defineConfig } from 'eslint/config'
import globals from 'globals'
import tseslint from 'typescript-eslint'

export default defineConfig(
  { ignores: ['dist/', 'runs/', 'tmp/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node },
    rules: {
      // Unused parameters and variables named with a leading underscore are deliberate (callbacks
      // that must take an argument, destructuring that drops a field).
      '@typescript-eslint/no-unused-vars': ['error', {
        argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_', destructuredArrayIgnorePattern: '^_',
      }],
    },
  },
)
