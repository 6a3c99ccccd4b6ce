-- Applied once, when `flux dev` first starts on this project.
create table if not exists greetings (id bigserial primary key, name text not null);
