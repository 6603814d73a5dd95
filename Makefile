# mailbridge — the two commands: `make run` (local stack) and `make test` (whole suite).
.PHONY: bootstrap run demo-mail demo-webhook demo-gmail demo-outlook lint test test-fast package bench clean

bootstrap:
	@bash scripts/bootstrap.sh

run: bootstrap
	.venv/bin/python -m infra.local_stack

demo-mail: bootstrap
	.venv/bin/python -m devservers $(if $(API),--api $(API))

demo-webhook: bootstrap
	.venv/bin/python -m devservers.webhook_receiver $(if $(PORT),--port $(PORT)) $(if $(SECRET),--secret $(SECRET))

demo-gmail: bootstrap
	.venv/bin/python -m devservers.fake_google $(if $(API),--api $(API))
demo-outlook: bootstrap
	.venv/bin/python -m devservers.fake_microsoft $(if $(API),--api $(API))

lint: bootstrap
	.venv/bin/ruff check .

test: bootstrap lint
	.venv/bin/python -m pytest -q -n 2

test-fast: bootstrap
	.venv/bin/python -m pytest -q -n 2 -m "not slow"

package: bootstrap
	.venv/bin/python -m infra.package --stage $${STAGE:-dev} --out build/

bench: bootstrap
	.venv/bin/python -m bench

clean:
	rm -rf .venv build .pytest_cache
