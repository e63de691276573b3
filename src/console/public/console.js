// The Hellwall console's only script, served from this origin (the CSP allows no other and no
// inline code). Everything works without it; it adds a confirmation before destructive actions
// and leaves the page for the login when the session's idle time has passed.
'use strict';

document.addEventListener('submit', (event) => {
  const form = event.target;
  if (!(form instanceof HTMLFormElement) || !form.dataset.confirm) return;
  if (!window.confirm(form.dataset.confirm)) {
    event.preventDefault();
    return;
  }
  // Confirmed here: the server need not ask again.
  if (!form.querySelector('input[name="confirm"]')) {
    const yes = document.createElement('input');
    yes.type = 'hidden';
    yes.name = 'confirm';
    yes.value = 'yes';
    form.append(yes);
  }
});

const idle = Number(document.body.dataset.idleSeconds);
if (idle > 0) {
  let timer;
  const arm = () => {
    clearTimeout(timer);
    timer = setTimeout(() => window.location.assign('/login?ended=1'), idle * 1000);
  };
  arm();
  // Typing in a form is activity the server has not seen yet; the next request counts it.
  document.addEventListener('input', arm);
}
