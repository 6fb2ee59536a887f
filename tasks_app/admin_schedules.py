"""django-celery-beat's periodic task admin, with its actions guarded and written to the admin log.

The library's actions (run now, enable, disable, toggle) declare no permissions, so a staff user
who may only *view* schedules could run the cleanup job or disable a housekeeping job from the
changelist, and nothing would record who did. Here each action needs the change permission
(`django_celery_beat.change_periodictask`): Django hides it from everyone else and refuses it if
posted anyway. Every job acted on gets an admin log entry naming the operator. The actions still
run the library's own code, and the rest of its admin (form, fieldsets, changelist) is unchanged
but for the edit page's crontab help (admin/tasks_app/periodictask_change_form.html).
"""

from django.contrib import admin
from django.utils.translation import gettext_lazy as _
from django_celery_beat.admin import PeriodicTaskAdmin
from django_celery_beat.models import PeriodicTask

from tasks_app.models import DeletedPeriodicJob


class GuardedPeriodicTaskAdmin(PeriodicTaskAdmin):
    # The library's page, its crontab help without "Translation: undefined" (see the template).
    change_form_template = "admin/tasks_app/periodictask_change_form.html"

    @admin.action(description=_("Enable selected tasks"), permissions=["change"])
    def enable_tasks(self, request, queryset):
        jobs = list(queryset)
        super().enable_tasks(request, queryset)
        self._log_each(request, jobs, "Enabled")

    @admin.action(description=_("Disable selected tasks"), permissions=["change"])
    def disable_tasks(self, request, queryset):
        jobs = list(queryset)
        super().disable_tasks(request, queryset)
        self._log_each(request, jobs, "Disabled")

    @admin.action(description=_("Toggle activity of selected tasks"), permissions=["change"])
    def toggle_tasks(self, request, queryset):
        jobs = list(queryset)  # read before the toggle: each entry says which way its job went
        super().toggle_tasks(request, queryset)
        for job in jobs:
            self.log_change(request, job, "Disabled (toggled)" if job.enabled else "Enabled (toggled)")

    @admin.action(description=_("Run selected tasks"), permissions=["change"])
    def run_tasks(self, request, queryset):
        jobs = list(queryset)
        super().run_tasks(request, queryset)
        # The library sends nothing when one job names a task no module registers (it says which);
        # then there is nothing to log. It imported the task modules, so the registry is complete.
        if all(job.task in self.celery_app.tasks for job in jobs):
            self._log_each(request, jobs, "Ran now")

    def _log_each(self, request, jobs, message: str) -> None:
        for job in jobs:
            self.log_change(request, job, message)


admin.site.unregister(PeriodicTask)
admin.site.register(PeriodicTask, GuardedPeriodicTaskAdmin)


@admin.register(DeletedPeriodicJob)
class DeletedPeriodicJobAdmin(admin.ModelAdmin):
    """System jobs an operator deleted: `migrate` leaves them deleted. Deleting a mark here brings the
    job back at the next `migrate` (or `setup_periodic_tasks`)."""

    list_display = ("name", "deleted_at")
    readonly_fields = ("name", "deleted_at")

    def has_add_permission(self, request) -> bool:
        return False

    def has_change_permission(self, request, obj=None) -> bool:
        return False
