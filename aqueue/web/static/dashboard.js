// aqueue dashboard: live over the /ws WebSocket (protocol in docs/web.md); never polls.
// Every piece of job data reaches the page through textContent or createTextNode, never as HTML.
// The modules in dashboard/: state.js (what the page knows), live.js (the socket and its messages), tables.js (the
// figures, tables and job details), charts.js (the canvas charts), actions.js (the buttons), util.js (helpers).

import { control } from './dashboard/actions.js';
import { connect, switchQueue } from './dashboard/live.js';
import { scheduleRender, setRenderer, setSwitcher, state } from './dashboard/state.js';
import { render } from './dashboard/tables.js';
import { $ } from './dashboard/util.js';

setRenderer(render);
setSwitcher(switchQueue);
const jobsBox = $('jobs').parentElement;
jobsBox.addEventListener('mouseenter', () => { state.pointerOnJobs = true; });
jobsBox.addEventListener('mouseleave', () => { state.pointerOnJobs = false; scheduleRender(); });
$('pause').addEventListener('click', () => control('pause'));
$('resume').addEventListener('click', () => control('resume'));
$('queue-select').addEventListener('change', (e) => switchQueue(e.target.value || null));
window.addEventListener('resize', scheduleRender);
render();
connect();
