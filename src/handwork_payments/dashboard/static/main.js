// Boot: signed in or to the login page; the role decides what the navigation shows (the
// API still decides what each call may do); then the page's own script.
import { ApiError, fill, flash, me, signIn, signOut, token } from "./core.js";
import { overview } from "./overview.js";
import { queues } from "./queues.js";
import { payment, users } from "./story.js";
import { account } from "./me.js";

const PAGES = { overview, queues, payment, users, me: account };

function home(user) {
  return user.role === "admin" ? "/dashboard" : "/dashboard/me";
}

function login() {
  const form = document.getElementById("login-form");
  const error = document.getElementById("login-error");
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    error.hidden = true;
    try {
      const user = await signIn(form.username.value, form.password.value);
      location.assign(home(user));
    } catch (err) {
      error.textContent = err.message;
      error.hidden = false;
    }
  });
}

async function boot() {
  const page = document.body.dataset.page;
  if (page === "login") return login();
  const user = me();
  if (!token() || !user) return location.assign("/dashboard/login");
  document.body.dataset.role = user.role;
  fill("#who-name", user.full_name || user.email);
  fill("#who-role", `${user.role} · ${user.email}`);
  document.getElementById("sign-out").addEventListener("click", signOut);
  const adminPage = page !== "me";
  if (adminPage !== (user.role === "admin")) return location.assign(home(user));
  try {
    await PAGES[page]();
    document.body.dataset.ready = "true";
  } catch (e) {
    if (!(e instanceof ApiError && e.status === 401)) flash(e.message, "error");
    document.body.dataset.ready = "error";
  }
}

boot();
