// Progressive enhancement only: every page works without this file.
// Loaded as a module (modules run only in browsers the NHS.UK frontend
// supports), so the classes its CSS keys on are set here, not inline
// (the Content-Security-Policy forbids inline script).
import { initAll } from './nhsuk-frontend/nhsuk-frontend.min.js'

document.body.classList.add('js-enabled', 'nhsuk-frontend-supported')
initAll()
